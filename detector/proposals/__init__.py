"""Making precomputed region proposals (R-CNN's practice; the 2014 entry's Selective Search and
MultiBox boxes): Selective Search through OpenCV contrib (``selective_search``), the methods
(``methods``: Selective Search, the RPN standing in for MultiBox), recall tables (``recall``) and the
run that makes a split's file (``make``). The file itself, which the data pipeline reads, is
:mod:`detector.data.proposals`."""
