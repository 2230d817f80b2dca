"""triton/tts/1/model.py: the request/response logic around the TTS model, with a fake synthesizer."""

import os
import tempfile
import threading
import time
import unittest
from unittest import mock

import numpy as np

import _support  # noqa: F401  (puts the stand-in pb_utils on sys.path)
import triton_python_backend_utils as pb_utils
from _support import initialize_args, load_model_module

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
RATE = 24000
CHUNK = 480  # 20 ms at 24 kHz
WAIT_S = 5.0


class FakeSynthesizer:
    """Stands in for CosyVoiceSynthesizer: `chunks_per_segment` sine chunks per segment."""

    instances = []

    def __init__(self, model_dir, voices_dir, cosyvoice_repo, fp16, device_id):
        self.kwargs = dict(model_dir=model_dir, voices_dir=voices_dir, cosyvoice_repo=cosyvoice_repo, fp16=fp16, device_id=device_id)
        self.sample_rate = RATE
        self.voices = ["default", "warm"]
        self.chunks_per_segment = 3
        self.fail_after = None  # raise after this many chunks
        self.calls = []
        self.chunks_made = 0
        self.closed = 0
        self.gate = None  # a threading.Event each chunk waits for, when set
        FakeSynthesizer.instances.append(self)

    def stream(self, text, voice):
        self.calls.append((text, voice))
        try:
            for index in range(self.chunks_per_segment):
                if self.fail_after is not None and index == self.fail_after:
                    raise RuntimeError("vocoder failed")
                if self.gate is not None:
                    assert self.gate.wait(WAIT_S)
                self.chunks_made += 1
                t = (np.arange(CHUNK) + index * CHUNK) / RATE
                yield (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        finally:
            self.closed += 1


def text_request(text=None, voice=None, cancel_after=None):
    inputs = []
    if text is not None:
        inputs.append(pb_utils.Tensor("text", np.array([text.encode("utf-8")], dtype=np.object_)))
    if voice is not None:
        inputs.append(pb_utils.Tensor("voice", np.array([voice.encode("utf-8")], dtype=np.object_)))
    return pb_utils.InferenceRequest(inputs=inputs, sender=pb_utils.ResponseSender(cancel_after=cancel_after))


class TtsModelTest(unittest.TestCase):
    def setUp(self):
        self.module = load_model_module("tts")
        patcher = mock.patch.object(self.module, "CosyVoiceSynthesizer", FakeSynthesizer)
        patcher.start()
        self.addCleanup(patcher.stop)
        self.model = self.module.TritonPythonModel()
        self.model.initialize(initialize_args("tts"))
        self.addCleanup(self.model.finalize)
        self.tts = FakeSynthesizer.instances[-1]

    def execute(self, *requests):
        self.assertIsNone(self.model.execute(list(requests)))
        for each in requests:
            self.assertTrue(each.sender.done.wait(WAIT_S), "no final flag")
        for each in requests:
            self.assertEqual(each.sender.misuse, [])
            self.assertEqual(each.sender.final_count(), 1)
        return requests

    def test_streams_the_segment_then_a_flag_only_final(self):
        (segment,) = self.execute(text_request("Hello, how can I help?"))
        sent = segment.sender.sent
        self.assertEqual(len(sent), 4)
        for response, flags in sent[:3]:
            self.assertEqual(flags, 0)
            self.assertFalse(response.has_error())
            audio = response.output("audio")
            self.assertEqual((audio.dtype, audio.shape), (np.float32, (CHUNK,)))
            rate = response.output("sample_rate")
            self.assertEqual((rate.dtype, rate.tolist()), (np.int32, [RATE]))
        self.assertEqual(sent[3], (None, FINAL))
        # The chunks are the synthesizer's, in order.
        joined = np.concatenate([response.output("audio") for response, _ in sent[:3]])
        expected = (0.5 * np.sin(2 * np.pi * 440 * np.arange(3 * CHUNK) / RATE)).astype(np.float32)
        np.testing.assert_allclose(joined, expected, atol=1e-6)
        self.assertEqual(self.tts.calls, [("Hello, how can I help?", "default")])

    def test_voice_input_picks_the_voice(self):
        self.execute(text_request("One.", voice="warm"), text_request("Two.", voice=""))
        self.assertEqual(sorted(self.tts.calls), [("One.", "warm"), ("Two.", "default")])

    def test_unknown_voice_is_an_error_with_the_final_flag(self):
        (segment,) = self.execute(text_request("Hi.", voice="robot"))
        ((response, flags),) = segment.sender.sent
        self.assertEqual(flags, FINAL)
        self.assertEqual(response.error().code(), pb_utils.TritonError.INVALID_ARG)
        self.assertIn("unknown voice 'robot'", response.error().message())
        self.assertEqual(self.tts.calls, [])

    def test_missing_text_is_an_error_with_the_final_flag(self):
        (segment,) = self.execute(text_request(None, voice="warm"))
        ((response, flags),) = segment.sender.sent
        self.assertEqual(flags, FINAL)
        self.assertIn("missing input 'text'", response.error().message())

    def test_empty_or_blank_text_gets_only_the_final_flag(self):
        for text in ("", "   \n\t"):
            with self.subTest(text=text):
                (segment,) = self.execute(text_request(text))
                self.assertEqual(segment.sender.sent, [(None, FINAL)])
        self.assertEqual(self.tts.calls, [])

    def test_cancellation_stops_between_chunks_and_still_sends_the_final_flag(self):
        self.tts.chunks_per_segment = 100
        (segment,) = self.execute(text_request("A long answer.", cancel_after=2))
        self.assertEqual(len(segment.sender.responses()), 2)
        self.assertEqual(segment.sender.sent[-1], (None, FINAL))
        # The synthesizer was stopped, not drained.
        self.assertLessEqual(self.tts.chunks_made, 3)
        self.assertEqual(self.tts.closed, 1)

    def test_request_cancelled_before_it_starts_only_gets_the_final_flag(self):
        (segment,) = self.execute(text_request("Never mind.", cancel_after=0))
        self.assertEqual(segment.sender.sent, [(None, FINAL)])
        self.assertEqual(self.tts.calls, [])

    def test_synthesis_failure_after_some_audio(self):
        self.tts.fail_after = 2
        (segment,) = self.execute(text_request("Broken."))
        sent = segment.sender.sent
        self.assertEqual(len(sent), 3)
        self.assertTrue(all(flags == 0 and not response.has_error() for response, flags in sent[:2]))
        response, flags = sent[2]
        self.assertEqual(flags, FINAL)
        self.assertIn("vocoder failed", response.error().message())

    def test_segments_stream_concurrently(self):
        # Segment 2 starts while segment 1 is still streaming (the client sends them back to back).
        self.tts.gate = threading.Event()
        first, second = text_request("First."), text_request("Second.")
        self.model.execute([first, second])
        for _ in range(250):
            if len(self.tts.calls) == 2:
                break
            time.sleep(0.02)
        self.assertEqual(sorted(text for text, _ in self.tts.calls), ["First.", "Second."])
        self.tts.gate.set()
        for each in (first, second):
            self.assertTrue(each.sender.done.wait(WAIT_S))
            self.assertEqual(len(each.sender.responses()), 3)

    def test_finalize_ends_running_streams_with_their_final_flag(self):
        self.tts.chunks_per_segment = 100
        self.tts.gate = threading.Event()
        segment = text_request("Shutting down.")
        self.model.execute([segment])
        stopper = threading.Thread(target=self.model.finalize)
        stopper.start()
        self.tts.gate.set()
        stopper.join(WAIT_S)
        self.assertFalse(stopper.is_alive())
        self.assertEqual(segment.sender.final_count(), 1)
        self.assertEqual(segment.sender.sent[-1], (None, FINAL))
        self.assertLess(len(segment.sender.responses()), 100)


class TtsInitializeTest(unittest.TestCase):
    def setUp(self):
        self.module = load_model_module("tts")
        patcher = mock.patch.object(self.module, "CosyVoiceSynthesizer", FakeSynthesizer)
        patcher.start()
        self.addCleanup(patcher.stop)

    def test_paths_and_device(self):
        with tempfile.TemporaryDirectory() as folder:
            os.makedirs(os.path.join(folder, "1", "CosyVoice2-0.5B"))
            model = self.module.TritonPythonModel()
            model.initialize(initialize_args("tts", repository_dir=folder))
            model.finalize()
            kwargs = FakeSynthesizer.instances[-1].kwargs
            self.assertEqual(kwargs["model_dir"], os.path.join(folder, "1", "CosyVoice2-0.5B"))
            self.assertEqual(kwargs["voices_dir"], os.path.join(folder, "voices"))
            self.assertEqual(kwargs["cosyvoice_repo"], "/opt/CosyVoice")
            self.assertEqual((kwargs["fp16"], kwargs["device_id"]), (True, 0))

            # Without a local copy, the name goes to CosyVoice as a ModelScope id.
            model = self.module.TritonPythonModel()
            args = initialize_args("tts", repository_dir=folder, model_dir="iic/CosyVoice2-0.5B", voices_dir="/srv/voices", fp16="false")
            args["model_instance_kind"] = "CPU"
            model.initialize(args)
            model.finalize()
            kwargs = FakeSynthesizer.instances[-1].kwargs
            self.assertEqual(kwargs["model_dir"], "iic/CosyVoice2-0.5B")
            self.assertEqual(kwargs["voices_dir"], "/srv/voices")
            self.assertEqual((kwargs["fp16"], kwargs["device_id"]), (False, None))

    def test_default_voice_must_exist(self):
        with self.assertRaises(pb_utils.TritonModelException):
            self.module.TritonPythonModel().initialize(initialize_args("tts", default_voice="missing"))


if __name__ == "__main__":
    unittest.main()
