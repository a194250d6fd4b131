"""transferkit serve as clients use it: a real HTTP client on loopback, the CLI, and the page in headless Chromium."""
import base64
import io
import json
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

import transferkit
from conftest import cli
from transferkit.serve import make_server

MAX_BYTES = 2**18
BAR_BLUE = (42, 111, 219)  # the page's bars, #2a6fdb


@pytest.fixture(scope="module")
def images(photos):
    """Five image files: two PNGs of each class of the training folder and a JPEG of another size."""
    paths = [path for name in ("horizontal", "vertical") for path in sorted((photos / name).glob("*.png"))[:2]]
    jpeg = photos.parent / "serve-sample.jpg"
    Image.open(paths[0]).resize((45, 37)).save(jpeg, quality=90)
    return [*paths, jpeg]


def _serving(source, **kwargs):
    server = make_server(source, port=0, max_bytes=MAX_BYTES, **kwargs)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def server(photos_run):
    server = _serving(photos_run.run_dir)
    yield server
    server.shutdown()
    server.server_close()


def request(server, path, body=None, data=None):
    """(status, JSON answer) of a GET, or a POST of ``body`` as JSON (or of the bytes ``data``)."""
    payload = data if data is not None else None if body is None else json.dumps(body).encode()
    sent = urllib.request.Request(server.url.rstrip("/") + path, data=payload,
                                  headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(sent, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def instances(*paths):
    return {"instances": [{"b64": base64.b64encode(path.read_bytes()).decode()} for path in paths]}


def test_predictions_equal_transferkit_predict(server, photos_run, images):
    status, answer = request(server, "/v1/models/model:predict", instances(*images))
    assert status == 200
    predictor = transferkit.load(photos_run.run_dir)
    expected = predictor.predict(images)
    assert len(answer["predictions"]) == len(images)
    for prediction, row, top in zip(answer["predictions"], expected, predictor.top_k(expected, k=2)):
        np.testing.assert_allclose(prediction["probabilities"], row, atol=1e-6)
        assert prediction["class_name"] == predictor.class_names[row.argmax()]
        assert [t["class_name"] for t in prediction["top_k"]] == [name for name, _ in top]
        assert [t["probability"] for t in prediction["top_k"]] == pytest.approx([p for _, p in top], abs=1e-6)
    assert {p["class_name"] for p in answer["predictions"]} == {"horizontal", "vertical"}  # not one constant answer


def test_status_and_metadata(server):
    assert request(server, "/v1/models/model") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    status, answer = request(server, "/v1/models/model/metadata")
    assert status == 200 and answer["model_spec"]["name"] == "model"
    meta = answer["metadata"]
    assert meta["class_names"] == ["horizontal", "vertical"] and meta["image_size"] == 32
    assert (meta["backbone"], meta["format"], meta["explain"]) == ("vgg16", "run", True)
    assert meta["weights"].startswith("hed-bsds500") and meta["runtime"].startswith("keras ")


def test_reject_answers_unknown_below_the_threshold_given_or_stored(server, photos_run, images):
    predictor = transferkit.load(photos_run.run_dir)
    tops = np.sort(predictor.predict(images).max(axis=1))
    assert tops[0] < tops[-1], tops  # the images' top probabilities differ: a threshold between them splits them
    threshold = float((tops[0] + tops[-1]) / 2)
    rejecting = _serving(photos_run.run_dir, reject=threshold)
    stored = _serving(photos_run.run_dir, name="stored", reject=None)
    try:
        status, answer = request(rejecting, "/v1/models/model:predict", instances(*images))
        assert status == 200
        for prediction in answer["predictions"]:
            top = max(prediction["probabilities"])
            assert prediction["answer"] == ("unknown" if top < threshold else prediction["class_name"])
            assert prediction["reject_threshold"] == threshold
        assert {p["answer"] for p in answer["predictions"]} & {"unknown"}
        assert {p["answer"] for p in answer["predictions"]} - {"unknown"}
        assert request(rejecting, "/v1/models/model/metadata")[1]["metadata"]["reject_threshold"] == threshold
        meta = request(stored, "/v1/models/stored/metadata")[1]["metadata"]
        assert meta["reject_threshold"] == predictor.threshold()
    finally:
        for each in (rejecting, stored):
            each.shutdown()
            each.server_close()
    _, plain = request(server, "/v1/models/model:predict", instances(images[0]))
    assert "answer" not in plain["predictions"][0]  # no --reject: every image gets its top class
    assert request(server, "/v1/models/model/metadata")[1]["metadata"]["reject_threshold"] is None


def test_explain_returns_the_grad_cam_overlay_as_png(server, images):
    status, answer = request(server, "/v1/models/model:explain", instances(images[0]))
    assert status == 200
    explained, = answer["predictions"]
    _, predicted = request(server, "/v1/models/model:predict", instances(images[0]))
    assert explained["class_name"] == predicted["predictions"][0]["class_name"]
    png = base64.b64decode(explained["grad_cam"]["b64"])
    assert png.startswith(b"\x89PNG")
    overlay = np.asarray(Image.open(io.BytesIO(png)))
    image = np.asarray(Image.open(images[0]).convert("RGB"))  # 32 px, the model's size: resized as it is
    assert overlay.shape == (32, 32, 3) and np.abs(overlay.astype(int) - image).mean() > 5  # coloured by the map


def _b64(data):
    return base64.b64encode(data).decode()


BAD_REQUESTS = {
    "not JSON": ("/v1/models/model:predict", b'{"instances": [', 400, "the body is not JSON"),
    "no instances": ("/v1/models/model:predict", b'{"inputs": []}', 400, 'the body must be {"instances"'),
    "missing b64": ("/v1/models/model:predict", b'{"instances": [{"image": "x"}]}', 400,
                    'instance 0 has no "b64" string'),
    "not base64": ("/v1/models/model:predict", b'{"instances": [{"b64": "%%%"}]}', 400,
                   "instance 0: b64 is not base64"),
    "not an image": ("/v1/models/model:predict", json.dumps({"instances": [{"b64": _b64(b"hello")}]}).encode(), 400,
                     "cannot read instance 0: not an image (unrecognised format)"),
    "too large": ("/v1/models/model:predict", b" " * (MAX_BYTES + 1), 413,
                  f"the body has {MAX_BYTES + 1} bytes, more than the {MAX_BYTES} allowed"),
    "unknown model": ("/v1/models/fashion:predict", b"{}", 404, "unknown model 'fashion'; this server serves 'model'"),
    "unknown path": ("/v2/predict", b"{}", 404, "no such path /v2/predict"),
    "GET to predict": ("/v1/models/model:predict", None, 405, ":predict takes POST"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_a_bad_request_gets_a_4xx_one_line_and_the_server_keeps_serving(server, images, capsys, case):
    path, data, status, message = BAD_REQUESTS[case]
    capsys.readouterr()
    code, answer = request(server, path, data=data)
    assert code == status and list(answer) == ["error"] and message in answer["error"]
    assert "\n" not in answer["error"]
    logged = capsys.readouterr().err.strip().splitlines()
    assert len(logged) == 1 and f" {status} " in logged[0] and message in logged[0]  # no traceback
    code, answer = request(server, "/v1/models/model:predict", instances(images[0]))
    assert code == 200 and answer["predictions"][0]["class_name"] in ("horizontal", "vertical")


def test_explain_takes_one_instance(server, images):
    assert request(server, "/v1/models/model:explain", instances(*images[:2])) == \
        (400, {"error": "explain takes one instance; got 2"})


def test_a_tflite_export_predicts_as_loaded_and_refuses_to_explain(photos_run, images, tmp_path):
    out = tmp_path / "tflite"
    transferkit.export(photos_run.run_dir, "tflite", out=out)
    server = _serving(out, name="stripes")
    try:
        status, answer = request(server, "/v1/models/stripes:predict", instances(*images))
        assert status == 200
        expected = transferkit.load(out).predict(images)
        np.testing.assert_allclose([p["probabilities"] for p in answer["predictions"]], expected, atol=1e-6)
        meta = request(server, "/v1/models/stripes/metadata")[1]["metadata"]
        assert (meta["format"], meta["backbone"], meta["explain"]) == ("tflite", "vgg16", False)
        assert request(server, "/v1/models/stripes:explain", instances(images[0])) == \
            (400, {"error": "Grad-CAM needs a run directory or a Keras export, not a tflite export"})
    finally:
        server.shutdown()
        server.server_close()


def test_the_command_prints_the_url_serves_and_stops_on_ctrl_c(photos_run, tmp_path):
    process = subprocess.Popen([sys.executable, "-m", "transferkit", "serve", str(photos_run.run_dir), "--port", "0",
                                "--name", "stripes", "--reject"], cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert " as 'stripes' at http://127.0.0.1:" in line, process.stderr.read() if not line else line
        threshold = transferkit.load(photos_run.run_dir).threshold()
        assert f"unknown below {threshold:.4f};" in line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url + "v1/models/stripes", timeout=30) as answer:
            assert json.loads(answer.read())["model_version_status"][0]["state"] == "AVAILABLE"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and out.strip() == "stopped" and "Traceback" not in err
    missing = subprocess.run([sys.executable, "-m", "transferkit", "serve", "no-such-run"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("error: no-such-run is neither a run directory")
    assert "Traceback" not in missing.stderr


def test_serve_reject_before_the_source_is_a_one_line_error(photos_run, tmp_path):
    result = cli("serve", "--reject", photos_run.run_dir, cwd=tmp_path)
    assert result.returncode == 2 and "is not a probability from 0 to 1 (put --reject after SOURCE" in result.stderr


def _chromium():
    webdriver = pytest.importorskip("selenium.webdriver", reason="the page test needs selenium (the test extra)")
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (browser and driver):
        pytest.skip("the page test needs Debian's chromium and chromium-driver (/usr/bin/chromium, chromedriver)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=900,640"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def _drop(browser, server, metadata_text, picture):
    """Open ``server``'s page, wait for its model line to show ``metadata_text``, choose ``picture`` and wait for
    the answer; the page must end in its ``done`` state."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url)
    WebDriverWait(browser, 20).until(lambda b: metadata_text in b.find_element(By.ID, "model").text)
    browser.find_element(By.ID, "file").send_keys(str(picture))
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-state")
                                     in ("done", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", \
        browser.find_element(By.ID, "error").text


def test_the_page_shows_the_top_classes_and_the_grad_cam(server, photos_run, images, tmp_path):
    from selenium.webdriver.common.by import By

    picture = tmp_path / "drop-me.png"  # a larger picture, as a person's would be
    Image.open(images[1]).resize((160, 160), Image.NEAREST).save(picture)
    expected = transferkit.load(photos_run.run_dir).predict(picture)[0]
    browser = _chromium()
    try:
        _drop(browser, server, "vgg16", picture)
        assert not browser.find_element(By.ID, "answer").is_displayed()  # no --reject: no answer line
        shown = [element.text for element in browser.find_elements(By.CSS_SELECTOR, "#classes .name")]
        assert shown == [("horizontal", "vertical")[i] for i in np.argsort(-expected, kind="stable")]
        assert browser.find_element(By.CSS_SELECTOR, "#classes .p").text == f"{100 * expected.max():.1f} %"
        assert browser.execute_script("return document.getElementById('cam').naturalWidth") == 32
        assert browser.find_element(By.ID, "cam-figure").is_displayed()
        screenshot = tmp_path / "serve-page.png"
        browser.save_screenshot(str(screenshot))
    finally:
        browser.quit()
    shot = np.asarray(Image.open(screenshot).convert("RGB")).astype(int)
    assert (np.abs(shot - BAR_BLUE).sum(axis=-1) < 30).sum() > 200  # the bars were drawn


def test_the_page_of_a_rejecting_server_says_unknown_below_its_threshold(photos_run, images, tmp_path):
    from selenium.webdriver.common.by import By

    tops = transferkit.load(photos_run.run_dir).predict(images).max(axis=1)
    doubtful = images[int(tops.argmin())]
    assert tops.min() < 0.9999, tops  # 0.9999 rejects it, and the page must not round the threshold to 100 %
    server = _serving(photos_run.run_dir, reject=0.9999)
    browser = _chromium()
    try:
        _drop(browser, server, "unknown below 99.99 %", doubtful)
        answer = browser.find_element(By.ID, "answer")
        assert answer.is_displayed()
        assert answer.text == "unknown: the top probability is below 99.99 %"
        assert browser.find_elements(By.CSS_SELECTOR, "#classes .name")  # the classes are still listed
        browser.save_screenshot(str(tmp_path / "serve-unknown.png"))
    finally:
        browser.quit()
        server.shutdown()
        server.server_close()
