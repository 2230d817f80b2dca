"""triton/parakeet_tdt/1/model.py: the request/response logic around the ASR model, with a fake model."""

import json
import unittest
from unittest import mock

import numpy as np

import _support  # noqa: F401  (puts the stand-in pb_utils on sys.path)
import triton_python_backend_utils as pb_utils
from _support import initialize_args, load_model_module

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
START = pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START
END = pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END
CHUNK_80MS = 1280  # samples at 16 kHz


class FakeTranscriber:
    """Stands in for ParakeetTranscriber: the 'transcript' says how much audio it was given."""

    instances = []

    def __init__(self, model_path, pretrained_name, device):
        self.model_path = model_path
        self.pretrained_name = pretrained_name
        self.device = device
        self.calls = []
        self.fail_with = None
        FakeTranscriber.instances.append(self)

    def transcribe(self, audio_16k_float32):
        assert audio_16k_float32.dtype == np.float32 and audio_16k_float32.ndim == 1
        self.calls.append(audio_16k_float32.copy())
        if self.fail_with is not None:
            raise self.fail_with
        return f"{audio_16k_float32.size} samples"


def chunk(samples, value=0.1):
    return np.full(samples, value, dtype=np.float32)


def request(audio, sequence_id="CA-call-1", flags=0, cancelled=False, extra_inputs=()):
    inputs = [] if audio is None else [pb_utils.Tensor("audio_chunk", audio)]
    return pb_utils.InferenceRequest(
        inputs=inputs + list(extra_inputs), correlation_id=sequence_id, flags=flags, cancelled=cancelled
    )


def outputs(response):
    transcript = response.output("transcript")
    is_final = response.output("is_final")
    assert transcript.dtype == np.object_ and transcript.shape == (1,)
    assert is_final.dtype == np.bool_ and is_final.shape == (1,)
    return transcript[0].decode("utf-8"), bool(is_final[0])


class ParakeetModelTest(unittest.TestCase):
    def setUp(self):
        self.module = load_model_module("parakeet_tdt")
        patcher = mock.patch.object(self.module, "ParakeetTranscriber", FakeTranscriber)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.model = self.module.TritonPythonModel()
        self.model.initialize(initialize_args("parakeet_tdt"))
        self.asr = FakeTranscriber.instances[-1]

    def run_requests(self, *requests):
        self.assertIsNone(self.model.execute(list(requests)))
        for sent in requests:
            self.assertEqual(sent.sender.misuse, [])
            # Every request is closed by exactly one final flag, on its last send.
            self.assertEqual(sent.sender.final_count(), 1, sent.sender.sent)
            self.assertTrue(sent.sender.sent[-1][1] & FINAL)
        return requests

    def test_partial_every_160ms_then_final_on_end(self):
        sent = [
            request(chunk(CHUNK_80MS), flags=START),
            request(chunk(CHUNK_80MS)),
            request(chunk(CHUNK_80MS)),
            request(chunk(CHUNK_80MS)),
            request(chunk(CHUNK_80MS)),
        ]
        for each in sent:
            self.run_requests(each)
        responses = [[outputs(r) for r in each.sender.responses()] for each in sent]
        self.assertEqual(
            responses,
            [[], [("2560 samples", False)], [], [("5120 samples", False)], []],
        )
        # Requests without a partial end with a flag-only final; those with one, a partial then the flag.
        self.assertEqual(sent[0].sender.sent, [(None, FINAL)])
        self.assertEqual(sent[1].sender.sent[1], (None, FINAL))
        self.assertEqual(sent[1].sender.sent[0][1], 0)

        end = request(np.zeros(0, dtype=np.float32), flags=END)
        self.run_requests(end)
        self.assertEqual(len(end.sender.sent), 1)
        final_response, flags = end.sender.sent[0]
        self.assertEqual(flags, FINAL)
        self.assertEqual(outputs(final_response), ("6400 samples", True))
        # The utterance was transcribed as one contiguous signal, in order.
        self.assertEqual(self.asr.calls[-1].size, 5 * CHUNK_80MS)

    def test_end_drops_the_sequence(self):
        self.run_requests(request(chunk(3200), flags=START), request(chunk(1600), flags=END))
        self.assertEqual(self.model._sequences, {})
        # The next utterance of the same call starts from nothing.
        (first,) = self.run_requests(request(chunk(1600), flags=START | END))
        self.assertEqual(outputs(first.sender.responses()[0]), ("1600 samples", True))

    def test_single_request_utterance(self):
        (only,) = self.run_requests(request(chunk(4000), flags=START | END))
        self.assertEqual(len(only.sender.sent), 1)
        response, flags = only.sender.sent[0]
        self.assertEqual(flags, FINAL)
        self.assertEqual(outputs(response), ("4000 samples", True))

    def test_start_resets_an_unfinished_utterance(self):
        self.run_requests(request(chunk(CHUNK_80MS), flags=START), request(chunk(CHUNK_80MS)))
        # The client lost the previous END (e.g. its stream broke) and starts the next utterance.
        self.run_requests(request(chunk(CHUNK_80MS), flags=START))
        (end,) = self.run_requests(request(chunk(CHUNK_80MS), flags=END))
        self.assertEqual(outputs(end.sender.responses()[0]), ("2560 samples", True))

    def test_sequences_do_not_mix(self):
        a1 = request(chunk(CHUNK_80MS, 0.1), sequence_id="CA-a", flags=START)
        b1 = request(chunk(CHUNK_80MS * 3, 0.2), sequence_id="CA-b", flags=START)
        a2 = request(chunk(CHUNK_80MS, 0.1), sequence_id="CA-a")
        b2 = request(chunk(CHUNK_80MS, 0.2), sequence_id="CA-b", flags=END)
        a3 = request(chunk(CHUNK_80MS, 0.1), sequence_id="CA-a", flags=END)
        self.run_requests(a1, b1, a2, b2, a3)  # one execute() holding requests of both sequences
        self.assertEqual(outputs(b1.sender.responses()[0]), ("3840 samples", False))
        self.assertEqual(outputs(a2.sender.responses()[0]), ("2560 samples", False))
        self.assertEqual(outputs(b2.sender.responses()[0]), ("5120 samples", True))
        self.assertEqual(outputs(a3.sender.responses()[0]), ("3840 samples", True))
        final_audio_of_a = self.asr.calls[-1]
        self.assertTrue(np.all(final_audio_of_a == np.float32(0.1)))

    def test_sequence_from_control_tensors(self):
        # When the request does not expose its flags/correlation id, the sequence batcher's control
        # tensors (START/END int32 [1], CORRID string [1]) say the same.
        def controlled(samples, start, end):
            controls = [
                pb_utils.Tensor("START", np.array([start], dtype=np.int32)),
                pb_utils.Tensor("END", np.array([end], dtype=np.int32)),
                pb_utils.Tensor("CORRID", np.array(["CA-ctrl".encode()], dtype=np.object_)),
            ]
            return request(chunk(samples), sequence_id="", extra_inputs=controls)

        first, last = self.run_requests(controlled(3000, 1, 0), controlled(1000, 0, 1))
        self.assertEqual(outputs(first.sender.responses()[0]), ("3000 samples", False))
        self.assertEqual(outputs(last.sender.responses()[0]), ("4000 samples", True))
        self.assertEqual(self.model._sequences, {})

    def test_request_outside_a_sequence_is_refused(self):
        (lone,) = self.run_requests(request(chunk(CHUNK_80MS), sequence_id=""))
        (response,) = lone.sender.responses()
        self.assertTrue(response.has_error())
        self.assertEqual(response.error().code(), pb_utils.TritonError.INVALID_ARG)
        self.assertIn("sequence_id", response.error().message())

    def test_cancelled_request_gets_its_final_flag_and_drops_the_utterance(self):
        self.run_requests(request(chunk(CHUNK_80MS * 2), flags=START))
        (cancelled,) = self.run_requests(request(chunk(CHUNK_80MS * 2), cancelled=True))
        self.assertEqual(cancelled.sender.sent, [(None, FINAL)])
        self.assertNotIn("CA-call-1", self.model._sequences)
        transcribed = len(self.asr.calls)
        # A straggler of the abandoned utterance starts from its own audio only.
        (straggler,) = self.run_requests(request(chunk(CHUNK_80MS * 2), flags=END))
        self.assertEqual(outputs(straggler.sender.responses()[0]), ("2560 samples", True))
        self.assertEqual(len(self.asr.calls), transcribed + 1)

    def test_bad_input_fails_only_its_own_request(self):
        good = request(chunk(CHUNK_80MS * 2), sequence_id="CA-good", flags=START)
        missing = request(None, sequence_id="CA-bad", flags=START)
        wrong_type = request(np.zeros(CHUNK_80MS, dtype=np.int16), sequence_id="CA-bad2", flags=START)
        self.run_requests(missing, good, wrong_type)
        for bad, text in ((missing, "missing input 'audio_chunk'"), (wrong_type, "FP32")):
            (response,) = bad.sender.responses()
            self.assertTrue(response.has_error())
            self.assertEqual(response.error().code(), pb_utils.TritonError.INVALID_ARG)
            self.assertIn(text, response.error().message())
            self.assertEqual(bad.sender.sent[0][1], FINAL)
        self.assertEqual(outputs(good.sender.responses()[0]), ("2560 samples", False))

    def test_model_failure_is_an_error_response_with_the_final_flag(self):
        self.run_requests(request(chunk(CHUNK_80MS), flags=START))
        self.asr.fail_with = RuntimeError("CUDA out of memory")
        (end,) = self.run_requests(request(chunk(CHUNK_80MS), flags=END))
        (response,) = end.sender.responses()
        self.assertTrue(response.has_error())
        self.assertIn("CUDA out of memory", response.error().message())
        self.assertEqual(end.sender.sent, [(response, FINAL)])
        self.assertEqual(self.model._sequences, {})

    def test_too_little_audio_is_an_empty_transcript_without_the_model(self):
        (tiny,) = self.run_requests(request(chunk(800), flags=START | END))  # 50 ms
        self.assertEqual(outputs(tiny.sender.responses()[0]), ("", True))
        (empty,) = self.run_requests(request(np.zeros(0, dtype=np.float32), flags=START | END))
        self.assertEqual(outputs(empty.sender.responses()[0]), ("", True))
        self.assertEqual(self.asr.calls, [])

    def test_transcript_is_utf8(self):
        self.asr.transcribe = lambda audio: "Ça coûte 20 €"
        (only,) = self.run_requests(request(chunk(4000), flags=START | END))
        self.assertEqual(outputs(only.sender.responses()[0]), ("Ça coûte 20 €", True))

    def test_idle_sequences_are_forgotten(self):
        clock = [1000.0]
        self.model._now = lambda: clock[0]
        self.run_requests(request(chunk(CHUNK_80MS), sequence_id="CA-gone", flags=START))
        self.run_requests(request(chunk(CHUNK_80MS), sequence_id="CA-live", flags=START))
        clock[0] += 59.0
        self.run_requests(request(chunk(CHUNK_80MS), sequence_id="CA-live"))
        self.assertEqual(sorted(self.model._sequences), ["CA-gone", "CA-live"])
        clock[0] += 2.0  # CA-gone idle 61 s > max_sequence_idle_microseconds (60 s); CA-live 2 s
        self.run_requests(request(chunk(CHUNK_80MS), sequence_id="CA-other", flags=START))
        self.assertEqual(sorted(self.model._sequences), ["CA-live", "CA-other"])


class ParakeetInitializeTest(unittest.TestCase):
    def setUp(self):
        self.module = load_model_module("parakeet_tdt")
        patcher = mock.patch.object(self.module, "ParakeetTranscriber", FakeTranscriber)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_model_location_and_device(self):
        args = initialize_args("parakeet_tdt", repository_dir="/models/parakeet_tdt")
        args["model_instance_device_id"] = "1"
        self.module.TritonPythonModel().initialize(args)
        asr = FakeTranscriber.instances[-1]
        self.assertEqual(asr.model_path, "/models/parakeet_tdt/1/parakeet-tdt-0.6b-v2.nemo")
        self.assertEqual(asr.pretrained_name, "nvidia/parakeet-tdt-0.6b-v2")
        self.assertEqual(asr.device, "cuda:1")

        args = initialize_args("parakeet_tdt", model_path="/weights/asr.nemo")
        args["model_instance_kind"] = "CPU"
        self.module.TritonPythonModel().initialize(args)
        asr = FakeTranscriber.instances[-1]
        self.assertEqual((asr.model_path, asr.device), ("/weights/asr.nemo", "cpu"))

    def test_partial_interval_comes_from_the_config(self):
        model = self.module.TritonPythonModel()
        model.initialize(initialize_args("parakeet_tdt", partial_interval_ms="100"))
        # 125 ms: no partial at the default 160 ms, one at 100 ms.
        first = request(chunk(2000), flags=START)
        model.execute([first])
        self.assertEqual(outputs(first.sender.responses()[0]), ("2000 samples", False))

    def test_refuses_a_non_decoupled_config(self):
        args = initialize_args("parakeet_tdt")
        config = json.loads(args["model_config"])
        del config["model_transaction_policy"]
        args["model_config"] = json.dumps(config)
        with self.assertRaises(pb_utils.TritonModelException):
            self.module.TritonPythonModel().initialize(args)


if __name__ == "__main__":
    unittest.main()
