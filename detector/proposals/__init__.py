"""Precomputed region proposals (R-CNN's practice, the 2014 entry's Selective Search and MultiBox
boxes): the file format, Selective Search through OpenCV contrib, recall tables, and the run that
makes a split's file."""

from .store import ProposalError, Proposals, RecordProposals, aligned, load_proposals, save_proposals

__all__ = ["ProposalError", "Proposals", "RecordProposals", "aligned", "load_proposals", "save_proposals"]
