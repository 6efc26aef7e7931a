"""tools/web_demo.py served on the suite's two trained members, called through its API
(gradio_client) and used in a real browser (Debian's chromium, headless, driven by Playwright);
and eval_map.py's report.html opened from disk in that browser. With ``SCREENSHOTS=DIR`` the
browser's pictures are kept there (the README's come from these tests)."""

from __future__ import annotations

import concurrent.futures
import glob
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from core.data import read_image

gradio_client = pytest.importorskip("gradio_client", reason="the web page's tests need pip install -e '.[web]'")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(CHROMIUM is None, reason="no chromium (make test installs Debian's)")
# as the machine's notes say: without the background-networking flags chromium keeps dialling out
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: str, n: int = 3000) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-n:]


@pytest.fixture(scope="module")
def server_log(tmp_path_factory) -> str:
    """The server's output: a file, not a pipe that nobody reads (which would stall the server once
    full), shown when a browser test fails."""
    return str(tmp_path_factory.mktemp("web") / "server.log")


@pytest.fixture(scope="module")
def server(members, server_log):
    port = free_port()
    with open(server_log, "w") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "web_demo.py"), *members.eval_args(),
                                 "--port", str(port)], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"the page did not come up: {tail(server_log)}")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def image(members) -> str:
    """A validation image on which the members detect confidently."""
    return sorted(glob.glob(os.path.join(members.root, "Data", "DET", "val", "*.JPEG")))[0]


def count(summary: str) -> int:
    return int(summary.split(" detection")[0])


def test_the_api_detects_and_says_what_is_wrong_with_a_file_that_is_not_an_image(server, image, tmp_path):
    client = gradio_client.Client(server, verbose=False)
    detect = lambda path, score: client.predict(gradio_client.handle_file(path), score, "ensemble",  # noqa: E731
                                                False, api_name="/detect")
    drawn, rows, summary = detect(image, 0.0)
    strict = count(detect(image, 0.99)[2])
    assert count(summary) == len(rows["data"]) >= 1 and strict < count(summary)
    assert {r[0] for r in rows["data"]} <= {"circle", "arrow"}  # the members' classes
    small, big = read_image(image), read_image(drawn)  # the image drawn, enlarged by a whole factor
    assert big.shape[0] % small.shape[0] == 0 and big.shape[0] // small.shape[0] == big.shape[1] // small.shape[1]
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(gradio_client.exceptions.AppError) as e:
        detect(str(bad), 0.3)
    assert "notes.jpg" in str(e.value) and "upload a JPEG or PNG image" in str(e.value)
    # 20 requests at once: every one answered, the same answer, and the page still up
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: detect(image, 0.0)[2], range(20)))
    assert answers == [summary] * 20
    assert urllib.request.urlopen(server, timeout=10).status == 200


def test_a_video_comes_back_drawn_frame_for_frame(server, image, tmp_path):
    import cv2
    import numpy as np

    frame = cv2.imread(image)
    clip = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(clip, cv2.VideoWriter_fourcc(*"mp4v"), 5, (frame.shape[1], frame.shape[0]))
    for k in range(4):
        writer.write(np.roll(frame, 10 * k, axis=1))
    writer.release()
    client = gradio_client.Client(server, verbose=False)
    out = client.predict(gradio_client.handle_file(clip), 0.3, "model_0", False, api_name="/detect_video")
    cap = cv2.VideoCapture(out["video"] if isinstance(out, dict) else out)
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    assert len(frames) == 4 and frames[0].shape == frame.shape
    # the first frame is the image itself: beyond the codec's noise, what differs is the boxes drawn
    assert (np.abs(frames[0].astype(int) - frame.astype(int)).max(axis=2) > 120).mean() > 0.01


# the table's rows, as a person reads them: lines naming one of the members' classes (gradio draws
# its table in a virtual grid whose cells are not one <tr> a row)
ROWS = ("document.querySelector('#table').innerText.split('\\n')"
        ".filter(line => ['arrow', 'circle'].includes(line.trim())).length == {}")


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)


def upload(page, path: str, server_log: str) -> None:
    """Gives ``path`` to the page's image input, as a person's file dialog does, and waits until the
    page shows it uploaded: once more if it does not within 20 s (a loaded machine), then fails with
    what the page, the browser's console and the server said."""
    from playwright.sync_api import TimeoutError as PageTimeout

    said = []
    page.on("console", lambda m: said.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: said.append(f"error: {e}"))
    page.on("requestfailed", lambda r: said.append(f"failed: {r.method} {r.url} {r.failure}"))
    # the uploaded file's row is named by its accessible label: its text is the name's stem and
    # extension in two spans with a space between, and only the upload's progress shows it whole
    shown = page.locator("#input-image").get_by_label(os.path.basename(path), exact=True)
    for _ in range(2):
        try:
            page.locator("#input-image input[type=file]").set_input_files(path, timeout=20_000)
            shown.wait_for(timeout=20_000)
            return
        except PageTimeout:
            said.append("(not shown after 20 s)")
    pytest.fail(f"{path} did not show as uploaded; the page: {page.inner_text('body')[-1500:]!r}\n"
                f"the browser: {said[-30:]}\nthe server: {tail(server_log)}")


def keep(page, name: str) -> None:
    if os.environ.get("SCREENSHOTS"):
        page.screenshot(path=os.path.join(os.environ["SCREENSHOTS"], name), full_page=True)


@needs_browser
def test_the_page_detects_an_uploaded_image_and_the_threshold_changes_the_boxes(server, server_log, image):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server, wait_until="networkidle")
        upload(page, image, server_log)
        page.click("#detect")
        page.wait_for_function("document.querySelector('#summary').innerText.includes('detection')")
        shown = count(page.inner_text("#summary"))
        page.wait_for_function(ROWS.format(shown))
        assert shown >= 1 and page.locator("#detections img").count() == 1
        keep(page, "web_demo.png")
        threshold = page.locator("#score input[type=number]")
        threshold.fill("0")
        threshold.press("Enter")
        page.wait_for_function("document.querySelector('#summary').innerText.includes('>= 0.00')")
        more = count(page.inner_text("#summary"))
        page.wait_for_function(ROWS.format(more))
        assert more > shown
        browser.close()


@needs_browser
def test_the_report_opens_from_disk_with_every_section(members, tmp_path):
    out = tmp_path / "eval"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "eval_map.py"), *members.eval_args(),
                           "--ensemble", "2", "--metric", "all", "--report", "--out", str(out)],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"the whole evaluation on one page: {out / 'report.html'}" in done.stdout
    for name in ("PR_curve.png", "confusion_matrix.png", "AP_per_class.png", "val_batch0_pred.png"):
        assert (out / name).stat().st_size > 1000, name
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:") else
                   route.continue_())  # self-contained: nothing but the file itself is fetched
        page.goto((out / "report.html").as_uri(), wait_until="load")
        for section in ("summary", "per-class", "pr-curves", "confusion", "errors", "images", "config"):
            assert page.locator(f"section#{section}").count() == 1, section
        sets = page.locator("#summary-table tr td:first-child").all_inner_texts()
        assert sets == ["model_0", "model_1", "ensemble2_shared"]
        widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
        assert len(widths) >= 7 and min(widths) > 0  # every picture embedded, and decoded
        assert "data.root" in page.inner_text("#config") or "root:" in page.inner_text("#config")
        keep(page, "report.png")
        browser.close()
