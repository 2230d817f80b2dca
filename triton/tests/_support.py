"""Shared helpers for the model repository tests (run with Debian's python3: numpy, protobuf, protoc)."""

import atexit
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
TRITON_DIR = os.path.dirname(TESTS_DIR)
REPO_ROOT = os.path.dirname(TRITON_DIR)
PROTO_DIR = os.path.join(REPO_ROOT, "src", "engines", "triton", "proto")

# The stand-in pb_utils must win over any real one.
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

_model_config_pb2 = None


def model_config_pb2():
    """The project's model_config.proto compiled with protoc, once per process."""
    global _model_config_pb2
    if _model_config_pb2 is None:
        out_dir = tempfile.mkdtemp(prefix="model_config_pb2-")
        atexit.register(shutil.rmtree, out_dir, ignore_errors=True)
        subprocess.run(
            ["protoc", f"--proto_path={PROTO_DIR}", f"--python_out={out_dir}", "model_config.proto"],
            check=True,
            capture_output=True,
        )
        spec = importlib.util.spec_from_file_location("model_config_pb2", os.path.join(out_dir, "model_config_pb2.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _model_config_pb2 = module
    return _model_config_pb2


def model_names():
    return sorted(
        name for name in os.listdir(TRITON_DIR) if os.path.isfile(os.path.join(TRITON_DIR, name, "config.pbtxt"))
    )


def parse_config(model_name):
    """Parses triton/<model>/config.pbtxt strictly (unknown fields or wrong types raise)."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    with open(os.path.join(TRITON_DIR, model_name, "config.pbtxt"), encoding="utf-8") as config_file:
        return text_format.Parse(config_file.read(), pb2.ModelConfig())


def config_json(model_name, **parameters):
    """The model config as Triton hands it to initialize(): JSON with the proto's field names.

    `parameters` override (or add) config parameters, as a deployment would in config.pbtxt.
    """
    from google.protobuf import json_format

    config = parse_config(model_name)
    if not config.name:
        config.name = model_name
    for key, value in parameters.items():
        config.parameters[key].string_value = value
    return json_format.MessageToJson(config, preserving_proto_field_name=True)


def initialize_args(model_name, repository_dir=None, **parameters):
    return {
        "model_config": config_json(model_name, **parameters),
        "model_instance_kind": "GPU",
        "model_instance_name": f"{model_name}_0_0",
        "model_instance_device_id": "0",
        "model_repository": repository_dir or os.path.join(TRITON_DIR, model_name),
        "model_version": "1",
        "model_name": model_name,
    }


def load_model_module(model_name):
    """Imports triton/<model>/1/model.py as a fresh module (so tests can patch it independently)."""
    path = os.path.join(TRITON_DIR, model_name, "1", "model.py")
    spec = importlib.util.spec_from_file_location(f"{model_name}_model", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
