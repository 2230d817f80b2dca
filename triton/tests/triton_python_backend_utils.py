"""A stand-in for Triton's `triton_python_backend_utils`, for testing model.py files without Triton.

It implements the part of the real module's API that our models use, with the same names and call
shapes (python_backend: src/resources/triton_python_backend_utils.py and the pybind classes in
src/pb_stub.cc), plus test-only request and response-sender classes that record what a model sends.
The tests put this folder first on sys.path, so `import triton_python_backend_utils` in a model.py
gets this module.
"""

import json
import threading

import numpy as np

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_START = 1
TRITONSERVER_REQUEST_FLAG_SEQUENCE_END = 2

_NUMPY_OF_TRITON_TYPE = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


def triton_string_to_numpy(triton_type_string):
    return _NUMPY_OF_TRITON_TYPE[triton_type_string]


def get_output_config_by_name(model_config, name):
    for output in model_config.get("output", []):
        if output["name"] == name:
            return output
    return None


def get_input_config_by_name(model_config, name):
    for model_input in model_config.get("input", []):
        if model_input["name"] == name:
            return model_input
    return None


def using_decoupled_model_transaction_policy(model_config):
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


class TritonModelException(Exception):
    pass


class TritonError:
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, message, code=UNKNOWN):
        self._message = message
        self._code = code

    def message(self):
        return self._message

    def code(self):
        return self._code

    def __repr__(self):
        return f"TritonError({self._message!r}, code={self._code})"


class Tensor:
    def __init__(self, name, array):
        if not isinstance(array, np.ndarray):
            raise TypeError(f"Tensor {name!r} needs a numpy array, got {type(array).__name__}")
        self._name = name
        self._array = array

    def name(self):
        return self._name

    def as_numpy(self):
        return self._array


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None, parameters=None):
        self._output_tensors = list(output_tensors or [])
        self._error = error
        self._parameters = parameters

    def output_tensors(self):
        return self._output_tensors

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error

    # Test helper, not in the real module.
    def output(self, name):
        for tensor in self._output_tensors:
            if tensor.name() == name:
                return tensor.as_numpy()
        return None


def get_input_tensor_by_name(request, name):
    for tensor in request.inputs():
        if tensor.name() == name:
            return tensor
    return None


def get_output_tensor_by_name(response, name):
    for tensor in response.output_tensors():
        if tensor.name() == name:
            return tensor
    return None


class Logger:
    """Records log lines (the real one writes to Triton's log)."""

    lines = []

    @classmethod
    def log_info(cls, message):
        cls.lines.append(("INFO", message))

    @classmethod
    def log_warn(cls, message):
        cls.lines.append(("WARN", message))

    @classmethod
    def log_error(cls, message):
        cls.lines.append(("ERROR", message))

    @classmethod
    def log_verbose(cls, message):
        cls.lines.append(("VERBOSE", message))


# ── test-only: requests and the response sender ─────────────────────────────────────────────────


class ResponseSender:
    """Records `send(response=None, flags=0)` calls the way a decoupled model makes them.

    Like Triton, it refuses anything after the final flag. `cancel_after` makes `is_cancelled()` turn
    true once that many responses were sent (None: never), to imitate a client cancelling mid-stream.
    """

    def __init__(self, cancel_after=None):
        self.sent = []  # (response or None, flags)
        self.cancel_after = cancel_after
        self.done = threading.Event()
        self.misuse = []
        self._lock = threading.Lock()

    def send(self, response=None, flags=0):
        with self._lock:
            if self.done.is_set():
                self.misuse.append("send after the final flag")
                raise TritonModelException("response sender already closed by the final flag")
            if response is None and flags != TRITONSERVER_RESPONSE_COMPLETE_FINAL:
                self.misuse.append("send without response or final flag")
            self.sent.append((response, flags))
            if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL:
                self.done.set()

    def is_cancelled(self):
        with self._lock:
            responses = sum(1 for response, _ in self.sent if response is not None)
        return self.cancel_after is not None and responses >= self.cancel_after

    # Views for assertions.
    def responses(self):
        return [response for response, _ in self.sent if response is not None]

    def final_count(self):
        return sum(1 for _, flags in self.sent if flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)


class InferenceRequest:
    """A request as a model's execute() sees it."""

    _next_id = 0

    def __init__(self, inputs, correlation_id=0, flags=0, parameters=None, cancelled=False, sender=None, request_id=None):
        InferenceRequest._next_id += 1
        self._inputs = list(inputs)
        self._correlation_id = correlation_id
        self._flags = flags
        self._parameters = parameters or {}
        self._cancelled = cancelled
        self._request_id = request_id if request_id is not None else f"req{InferenceRequest._next_id}"
        self.sender = sender if sender is not None else ResponseSender()

    def inputs(self):
        return self._inputs

    def correlation_id(self):
        return self._correlation_id

    def flags(self):
        return self._flags

    def request_id(self):
        return self._request_id

    def parameters(self):
        return json.dumps(self._parameters)

    def is_cancelled(self):
        return self._cancelled

    def get_response_sender(self):
        return self.sender
