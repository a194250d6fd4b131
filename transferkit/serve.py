"""A local HTTP server for a run or an export: TensorFlow Serving's REST API and a page to drop images on.

``POST /v1/models/NAME:predict`` takes ``{"instances": [{"b64": "<base64 image file>"}, ...]}`` and answers
``{"predictions": [{"probabilities": [...], "class_name": ..., "top_k": [...]}, ...]}`` (with a rejection threshold,
also ``"answer"``: the class name, or ``"unknown"`` below it, and ``"reject_threshold"``); ``:explain`` adds the
Grad-CAM overlay (a run directory or a Keras export); ``GET /v1/models/NAME`` is the model's status,
``/v1/models/NAME/metadata`` its class names, input size and backbone; ``/`` the page (``serve.html``).
A bad request gets a 4xx and ``{"error": "<one line>"}``, and one log line.

Example:
    >>> server = make_server("runs/demo-finetune-20261123-171500", port=0)
    >>> threading.Thread(target=server.serve_forever, daemon=True).start()
    >>> server.url
    'http://127.0.0.1:41237/'
"""
import base64
import binascii
import io
import json
import re
import sys
import threading
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.errors import TransferkitError

DEFAULT_MAX_BYTES = 10 * 2**20
TOP_K = 5
ROUTE = re.compile(r"/v1/models/(?P<name>[^/:]+)(?P<rest>/metadata|:predict|:explain)?")
NAME = re.compile(r"[A-Za-z0-9._-]+")


class RequestError(Exception):
    """A bad request: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _describe(predictor, name):
    """The metadata answer: TF Serving's ``model_spec`` and what the page needs to know about the model."""
    folder = predictor.path
    manifest = json.loads((folder / "export.json").read_text()) if (folder / "export.json").is_file() else {}
    run_dir = Path(manifest.get("run_dir", folder))
    metrics = json.loads((run_dir / "metrics.json").read_text()) if (run_dir / "metrics.json").is_file() else {}
    return {"model_spec": {"name": name, "signature_name": "", "version": "1"},
            "metadata": {"class_names": list(predictor.class_names), "image_size": predictor.image_size,
                         "resize": predictor.resize, "backbone": metrics.get("baseline") or metrics.get("backbone"),
                         "weights": metrics.get("weights"), "format": manifest.get("format", "run"),
                         "runtime": predictor.runtime}}


def _explain_error(predictor, format):
    """Why Grad-CAM cannot explain ``predictor``'s model, or ``None`` if it can."""
    from transferkit.explain import feature_model
    from transferkit.predict import KerasPredictor

    if not isinstance(predictor, KerasPredictor):
        return f"Grad-CAM needs a run directory or a Keras export, not a {format} export"
    try:
        feature_model(predictor.model)
    except TransferkitError as err:
        return f"Grad-CAM cannot explain this model: {err}"
    return None


def _instances(body):
    """The decoded images of a predict request's JSON ``body``."""
    from transferkit.predict import decode_image

    try:
        request = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not JSON ({err})") from None
    instances = request.get("instances") if isinstance(request, dict) else None
    if not isinstance(instances, list) or not instances:
        raise RequestError(HTTPStatus.BAD_REQUEST, 'the body must be {"instances": [{"b64": "<base64 image>"}, ...]}')
    images = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict) or not isinstance(instance.get("b64"), str):
            raise RequestError(HTTPStatus.BAD_REQUEST, f'instance {i} has no "b64" string')
        try:  # line breaks allowed, as base64(1) writes them
            data = base64.b64decode("".join(instance["b64"].split()), validate=True)
            images.append(decode_image(data, f"instance {i}"))
        except binascii.Error:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"instance {i}: b64 is not base64") from None
        except TransferkitError as err:
            raise RequestError(HTTPStatus.BAD_REQUEST, str(err)) from None
    return images


class ModelServer(ThreadingHTTPServer):
    """A :class:`ThreadingHTTPServer` over one :class:`~transferkit.predict.Predictor`, served as ``name``; one
    lock lets one request at a time use the model (a TFLite interpreter is not thread-safe)."""

    daemon_threads = True

    def __init__(self, predictor, name, address, max_bytes, threshold=None):
        self.predictor, self.name, self.max_bytes, self.threshold = predictor, name, max_bytes, threshold
        self.metadata = _describe(predictor, name)
        self.metadata["metadata"]["reject_threshold"] = threshold
        self.explain_error = _explain_error(predictor, self.metadata["metadata"]["format"])
        self.metadata["metadata"]["explain"] = self.explain_error is None
        self.lock = threading.Lock()
        page = resources.files("transferkit").joinpath("serve.html").read_text(encoding="utf-8")
        self.page = page.replace("__MODEL_NAME__", json.dumps(name)).encode()
        super().__init__(address, Handler)

    @property
    def url(self):
        """The page's address, e.g. ``http://127.0.0.1:8501/``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def predict(self, images):
        """TF Serving's ``predictions``: probabilities, the top class and the ``TOP_K`` best of each image; with a
        rejection threshold, the answer too (the top class, or ``"unknown"`` below the threshold)."""
        with self.lock:
            probabilities = self.predictor.predict(images)
        tops = self.predictor.top_k(probabilities, k=min(TOP_K, len(self.predictor.class_names)))
        rows = [{"probabilities": row.tolist(), "class_name": top[0][0],
                 "top_k": [{"class_name": name, "probability": p} for name, p in top]}
                for row, top in zip(probabilities, tops)]
        if self.threshold is not None:
            for row, answer in zip(rows, self.predictor.answers(probabilities, self.threshold)):
                row.update(answer=answer, reject_threshold=self.threshold)
        return rows

    def explain(self, images):
        """The prediction of one image with its Grad-CAM overlay (for the top class) as a base64 PNG."""
        from transferkit.data.pipeline import resize
        from transferkit.explain import grad_cam, overlay

        if self.explain_error:
            raise RequestError(HTTPStatus.BAD_REQUEST, self.explain_error)
        if len(images) != 1:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"explain takes one instance; got {len(images)}")
        prediction, = self.predict(images)
        image = resize(images[0], self.predictor.image_size, self.predictor.resize).numpy()
        index = self.predictor.class_names.index(prediction["class_name"])
        with self.lock:
            heatmap, _ = grad_cam(self.predictor.model, image, class_index=index)
        png = io.BytesIO()
        Image.fromarray(overlay(image, heatmap)).save(png, format="PNG")
        return {"predictions": [{**prediction, "grad_cam": {"b64": base64.b64encode(png.getvalue()).decode()}}]}

    def handle_error(self, request, client_address):
        """A client that went away or stalled is one log line; anything else the standard traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionError, TimeoutError)):
            sys.stderr.write(f"{client_address[0]} - - {type(error).__name__}: {error}\n")
        else:
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    """Routes a request to the :class:`ModelServer`; every answer but the page is JSON."""

    server_version = "transferkit"
    timeout = 60  # seconds a client may take to send its request

    def do_GET(self):
        self._answer(self._get)

    def do_POST(self):
        self._answer(self._post)

    def _get(self):
        if self.path in ("/", "/index.html"):
            return self.server.page
        rest = self._route()
        if rest is None:
            return {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                              "status": {"error_code": "OK", "error_message": ""}}]}
        if rest == "/metadata":
            return self.server.metadata
        raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{rest} takes POST")

    def _post(self):
        body = self._body()  # read before answering anything: a closed socket with unread data resets
        rest = self._route()
        if rest not in (":predict", ":explain"):
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.path} takes GET")
        images = _instances(body)
        return {"predictions": self.server.predict(images)} if rest == ":predict" else self.server.explain(images)

    def _route(self):
        """The part after ``/v1/models/NAME`` (``None``, ``/metadata``, ``:predict`` or ``:explain``)."""
        match = ROUTE.fullmatch(self.path)
        if not match:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no such path {self.path[:100]}; the API is /v1/models/"
                                                     f"{self.server.name}[:predict|:explain|/metadata]")
        if match["name"] != self.server.name:
            raise RequestError(HTTPStatus.NOT_FOUND, f"unknown model '{match['name'][:100]}'; this server serves "
                                                     f"'{self.server.name}'")
        return match["rest"]

    def _body(self):
        try:
            length = int(self.headers["Content-Length"])
        except (TypeError, ValueError):
            length = -1
        if length < 0:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "the request needs a Content-Length")
        if length > self.server.max_bytes:
            left = length
            while left > 0:  # drain it, so that the client reads the answer instead of a reset
                chunk = len(self.rfile.read(min(2**16, left)))
                left = left - chunk if chunk else 0
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"the body has {length} bytes, more than the "
                                                                    f"{self.server.max_bytes} allowed (--max-bytes)")
        return self.rfile.read(length)

    def _answer(self, handle):
        error = None
        try:
            answer = handle()
            status = HTTPStatus.OK
        except RequestError as err:
            status, error = err.status, str(err)
            answer = {"error": error}
        except (ConnectionError, TimeoutError):
            raise  # the client went away or stalled: ModelServer.handle_error logs one line
        except Exception as err:  # noqa: BLE001  (a bug here: answer it, keep serving, show the traceback)
            traceback.print_exc()
            status, error = HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(err).__name__}: {err}".splitlines()[0]
            answer = {"error": error}
        page = isinstance(answer, bytes)
        data = answer if page else json.dumps(answer).encode()
        self.log_message('"%s" %d%s', self.requestline, status, f" {error}" if error else "")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8" if page else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_request(self, code="-", size="-"):
        """Nothing: :meth:`_answer` logs each request once, with its error if any."""


def make_server(source, host="127.0.0.1", port=0, name="model", max_bytes=DEFAULT_MAX_BYTES, reject=False):
    """A :class:`ModelServer` for ``source`` (a run directory or an export of any format, as
    :func:`transferkit.load` takes) listening on ``host:port`` (port 0: a free one), not yet serving: call
    ``serve_forever()`` (in a thread, for tests) and ``shutdown()``; ``url`` is its page. ``reject``: False
    answers every image with its top class; a probability, or None for the threshold ``source`` stores
    (:meth:`~transferkit.predict.Predictor.threshold`), answers ``unknown`` below it.

    Example:
        >>> server = make_server("runs/demo-finetune-20261123-171500/export/tflite", port=8501, name="fashion",
        ...                      reject=None)
        >>> server.serve_forever()   # POST http://127.0.0.1:8501/v1/models/fashion:predict
    """
    from transferkit.predict import load

    if not NAME.fullmatch(name):
        raise TransferkitError(f"a model name is letters, digits, '.', '_' and '-'; got {name!r}")
    if max_bytes < 1:
        raise TransferkitError(f"--max-bytes must be positive; got {max_bytes}")
    predictor = load(source)
    threshold = None if reject is False else predictor.threshold(reject)
    predictor.predict(np.zeros((predictor.image_size, predictor.image_size, 3), np.uint8))  # warm up
    try:
        return ModelServer(predictor, name, (host, port), max_bytes, threshold)
    except OSError as err:
        raise TransferkitError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
