"""The demo page: what it shows for an image, bad uploads, 20 requests at once, and the page
in a real browser (headless Chromium through selenium; skipped, saying so, without one)."""

import glob
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
from PIL import Image

from helpers import IC03_MINI, REPO, stored_turned_jpeg, subprocess_env

from grcnn_jax.demo.reading import UploadError, check_upload, draw_reading, read_word
from grcnn_jax.inference.onnx_reader import OnnxReader

WORD = str(IC03_MINI / "word_1.png")            # "Hotel"
FILES = sorted(glob.glob(str(IC03_MINI / "**" / "*.png"), recursive=True))


@pytest.fixture(scope="module")
def reader():
    from grcnn_jax import assets

    return OnnxReader(assets.READER_ONNX_DIR)


def test_a_reading_has_text_alternatives_lexicon_and_frames(reader):
    with open(WORD, "rb") as f:
        reading = read_word(reader, f.read(), ["motel", "Hotel", "hostel"], beam_width=4)
    assert reading.text == "Hotel" and 0.5 < reading.confidence <= 1
    assert reading.alternatives[0][0] == "Hotel" and len(reading.alternatives) == 4
    assert reading.lexicon[0][0] == "Hotel" and len(reading.lexicon) == 3
    # Without the language model the beam is ranked by p(text | image) alone.
    from grcnn_jax import assets

    with open(WORD, "rb") as f:
        greedy_reader = OnnxReader(assets.READER_ONNX_DIR)
        greedy_reader.lm = None
        plain = read_word(greedy_reader, f.read(), beam_width=4)
    assert [p for _, p in plain.alternatives] == sorted(
        (p for _, p in plain.alternatives), reverse=True)
    assert reading.probs.shape == (26, 95) and np.allclose(reading.probs.sum(-1), 1, atol=1e-5)
    picture = draw_reading(reading, reader.charset)
    assert picture.mode == "RGB" and picture.width > 400 and picture.height > 128


@pytest.mark.parametrize("data, culprit", [
    (b"", "empty"),
    (b"not an image at all", "not an image"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 20, "not an image"),
])
def test_bad_uploads_are_refused_with_a_sentence(data, culprit):
    with pytest.raises(UploadError, match=culprit):
        check_upload(data)


def test_a_huge_image_is_refused_before_it_is_decoded(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (8000, 8000), 255).save(path)          # 64 MP, 80 KB on disk
    with pytest.raises(UploadError, match="8000 x 8000 pixels"):
        check_upload(path.read_bytes())


def test_a_photo_held_sideways_is_read_upright(reader):
    """A JPEG whose EXIF orientation says 'turn 90 degrees' (6) is read as a viewer shows it."""
    with Image.open(WORD) as word:
        assert read_word(reader, stored_turned_jpeg(word, 6)).text == "Hotel"


# ----------------------------------------------------------------------------- the server
gradio = pytest.importorskip("gradio")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("demo") / "server.log"
    env = subprocess_env(GRCNN_HUGE_PAGES="0", GRADIO_ANALYTICS_ENABLED="False",
                         GRADIO_TEMP_DIR=str(tmp_path_factory.mktemp("gradio")))
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "grcnn_jax.cli.demo", f"--port={port}"],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the demo server did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _read(client, path, lexicon=""):
    from gradio_client import handle_file

    return client.predict(handle_file(path), lexicon, 5, api_name="/read")


def test_the_page_answers_bad_uploads_and_goes_on_serving(server, tmp_path):
    from gradio_client import Client

    client = Client(server, verbose=False)
    status, text, confidence, alternatives, best, picture = _read(client, WORD, "motel,Hotel")
    assert text == "Hotel" and float(confidence) > 0.5 and "Hotel" in status
    assert alternatives["label"] == "Hotel" and best["label"] == "Hotel"
    assert Image.open(picture).width > 400
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    Image.new("L", (8000, 8000)).save(tmp_path / "huge.png")
    for name, culprit in [("empty.png", "empty"), ("text.png", "not an image"),
                          ("huge.png", "megapixels")]:
        status, text, *_ = _read(client, str(tmp_path / name))
        assert culprit in status and text == ""
    status, *_ = _read(client, WORD, "ÿÿÿ")                  # no lexicon word fits
    assert "no lexicon word fits" in status
    assert _read(client, WORD)[1] == "Hotel"                 # still serving


def test_twenty_concurrent_requests_are_all_answered(server):
    from gradio_client import Client, handle_file

    # The answers' texts are what is compared; the pictures are fetched in the test above.
    client = Client(server, verbose=False, download_files=False)
    want = [_read(client, f)[1] for f in FILES]
    jobs = [client.submit(handle_file(FILES[k % len(FILES)]), "", 5, api_name="/read")
            for k in range(20)]
    answers = [job.result(timeout=120) for job in jobs]
    assert [a[1] for a in answers] == [want[k % len(FILES)] for k in range(20)], [
        a[0] for a in answers]


def _browser():
    """A headless Chromium driven by selenium, or None with the reason."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None, "selenium is not installed (pip install selenium)"
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        return None, ("no Chromium here (apt-get install chromium chromium-driver; .ci/run "
                      "installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1100"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=driver), options=options), None


def test_the_page_reads_a_word_in_a_browser(server):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser, reason = _browser()
    if browser is None:
        pytest.skip(f"browser test skipped: {reason}")
    try:
        browser.get(server)
        wait = WebDriverWait(browser, 60)
        upload = wait.until(lambda b: b.find_element(By.CSS_SELECTOR,
                                                     "#word-image input[type=file]"))
        upload.send_keys(os.path.abspath(WORD))
        def text(b):
            return b.find_element(By.CSS_SELECTOR, "#text textarea").get_attribute("value")

        wait.until(lambda b: text(b) == "Hotel")
        assert "Hotel" in browser.find_element(By.ID, "status").text
        picture = browser.find_element(By.CSS_SELECTOR, "#picture img")
        assert picture.get_attribute("src")                      # the per-frame picture
    finally:
        browser.quit()


def test_the_command_refuses_flags_that_cannot_go_together():
    proc = subprocess.run([sys.executable, "-m", "grcnn_jax.cli.demo", "--engine", "jax",
                           "--onnx", "x"], cwd=REPO, env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode != 0 and "--engine chooses how the shipped reader" in proc.stderr
