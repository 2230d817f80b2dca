"""Streaming TTS for the voice-agent server: CosyVoice 2 0.5B on Triton's Python backend.

Contract (see ../config.pbtxt and ../../README.md):
  * one request = one text segment: `text` STRING [1], optional `voice` STRING [1];
  * answered by one response per audio chunk CosyVoice streams (`audio` FP32 [n] mono in [-1, 1],
    `sample_rate` INT32 [1]), then a flag-only TRITONSERVER_RESPONSE_COMPLETE_FINAL;
  * empty or whitespace-only text: the flag-only final alone;
  * a request that fails: an error response with the final flag (after any audio already sent);
  * a cancelled request (the client cancelled the stream: barge-in, hang-up) stops between chunks
    and still gets its final flag, as the Python backend requires.

Segments are synthesized on worker threads, so execute() returns at once and the next segment of a
reply starts while the previous one is still streaming (CosyVoice's own servers share one model
between threads the same way).
"""

import inspect
import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import triton_python_backend_utils as pb_utils

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class InputError(Exception):
    """A request the model cannot serve as sent: answered with INVALID_ARG."""


class CosyVoiceSynthesizer:
    """CosyVoice 2 behind `stream()` and `sample_rate`, so tests can replace it without CosyVoice.

    Voices are zero-shot prompts: <voices_dir>/<name>.wav (3-10 s of clean speech) and
    <name>.txt (its exact transcript), registered once at load time so requests skip the prompt's
    feature extraction.
    """

    def __init__(self, model_dir, voices_dir, cosyvoice_repo, fp16, device_id):
        import torch

        # CosyVoice puts everything on the current CUDA device: make that this instance's GPU.
        if device_id is not None and torch.cuda.is_available():
            torch.cuda.set_device(device_id)
        # The cosyvoice package is not on PyPI: it is imported from a checkout of the repository,
        # which also vendors Matcha-TTS. Imported here: torch and CosyVoice are heavy.
        if cosyvoice_repo:
            for path in (cosyvoice_repo, os.path.join(cosyvoice_repo, "third_party", "Matcha-TTS")):
                if path not in sys.path:
                    sys.path.append(path)
        from cosyvoice.cli.cosyvoice import CosyVoice2

        self._engine = CosyVoice2(model_dir, load_jit=False, load_trt=False, fp16=fp16)
        self.sample_rate = int(self._engine.sample_rate)
        self.voices = self._register_voices(voices_dir)

    def _register_voices(self, voices_dir):
        names = []
        for file_name in sorted(os.listdir(voices_dir)) if os.path.isdir(voices_dir) else []:
            name, extension = os.path.splitext(file_name)
            if extension.lower() != ".wav":
                continue
            transcript_path = os.path.join(voices_dir, name + ".txt")
            if not os.path.isfile(transcript_path):
                raise FileNotFoundError(f"voice {name!r} has no transcript {transcript_path}")
            with open(transcript_path, encoding="utf-8") as transcript:
                prompt_text = transcript.read().strip()
            wav_path = os.path.join(voices_dir, file_name)
            self._engine.add_zero_shot_spk(prompt_text, self._prompt_speech(wav_path), name)
            names.append(name)
        return names

    def _prompt_speech(self, wav_path):
        # Newer CosyVoice releases take the prompt's path (`prompt_wav`), older ones a 16 kHz tensor.
        parameters = list(inspect.signature(self._engine.add_zero_shot_spk).parameters)
        if len(parameters) > 1 and parameters[1] == "prompt_wav":
            return wav_path
        from cosyvoice.utils.file_utils import load_wav

        return load_wav(wav_path, 16000)

    def stream(self, text, voice):
        """Yields the segment's audio as float32 mono chunks at `sample_rate`."""
        # Prompt text and speech come from the registered voice (zero_shot_spk_id).
        for output in self._engine.inference_zero_shot(text, "", "", zero_shot_spk_id=voice, stream=True):
            yield output["tts_speech"].squeeze(0).float().cpu().numpy()


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = model_config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(model_config):
            raise pb_utils.TritonModelException("tts must be decoupled (model_transaction_policy { decoupled: True })")

        params = {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}
        model_folder = args["model_repository"]
        model_dir = params.get("model_dir", "CosyVoice2-0.5B")
        local_model_dir = os.path.join(model_folder, args["model_version"], model_dir)
        if not os.path.isabs(model_dir) and os.path.isdir(local_model_dir):
            model_dir = local_model_dir  # otherwise a ModelScope id, downloaded by CosyVoice
        voices_dir = params.get("voices_dir", "voices")
        if not os.path.isabs(voices_dir):
            voices_dir = os.path.join(model_folder, voices_dir)

        self._audio_dtype = pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(model_config, "audio")["data_type"])
        self._rate_dtype = pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(model_config, "sample_rate")["data_type"])

        self._tts = CosyVoiceSynthesizer(
            model_dir=model_dir,
            voices_dir=voices_dir,
            cosyvoice_repo=params.get("cosyvoice_repo", ""),
            fp16=params.get("fp16", "true").lower() == "true",
            device_id=int(args["model_instance_device_id"]) if args.get("model_instance_kind") == "GPU" else None,
        )
        self._default_voice = params.get("default_voice", "default")
        if self._default_voice not in self._tts.voices:
            raise pb_utils.TritonModelException(
                f"tts: default voice {self._default_voice!r} not found in {voices_dir} (found: {self._tts.voices})"
            )

        self._stopping = threading.Event()
        workers = max(1, int(params.get("max_concurrent_streams", "4")))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tts-stream")
        pb_utils.Logger.log_info(f"tts ready: {self._tts.sample_rate} Hz, voices {self._tts.voices}, {workers} concurrent streams")

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                text = self._text_of(request)
                if text.strip() == "":
                    sender.send(flags=FINAL)  # nothing to say: done at once
                    continue
                voice = self._voice_of(request)
            except InputError as error:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"tts: {error}", pb_utils.TritonError.INVALID_ARG)), flags=FINAL)
                continue
            self._pool.submit(self._stream_segment, sender, request.request_id(), text, voice)
        # Decoupled: the workers answer through the senders.
        return None

    def finalize(self):
        # Streams still running stop at their next chunk and send their final flag.
        if hasattr(self, "_pool"):
            self._stopping.set()
            self._pool.shutdown(wait=True)

    def _text_of(self, request):
        text_tensor = pb_utils.get_input_tensor_by_name(request, "text")
        if text_tensor is None:
            raise InputError("missing input 'text'")
        return _first_string(text_tensor.as_numpy())

    def _voice_of(self, request):
        voice_tensor = pb_utils.get_input_tensor_by_name(request, "voice")
        voice = _first_string(voice_tensor.as_numpy()).strip() if voice_tensor is not None else ""
        voice = voice or self._default_voice
        if voice not in self._tts.voices:
            raise InputError(f"unknown voice {voice!r} (available: {', '.join(self._tts.voices)})")
        return voice

    def _stream_segment(self, sender, request_id, text, voice):
        try:
            self._send_audio(sender, text, voice)
        except Exception as error:
            pb_utils.Logger.log_error(f"tts: request {request_id!r} failed: {error!r}")
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"tts: {error}")), flags=FINAL)
            return
        # Also after a cancellation: the request is only released by its final flag.
        sender.send(flags=FINAL)

    def _send_audio(self, sender, text, voice):
        if self._should_stop(sender):
            return
        chunks = self._tts.stream(text, voice)
        try:
            for chunk in chunks:
                # Checked between chunks: a cancelled segment stops costing GPU time at the next one.
                if self._should_stop(sender):
                    return
                audio = np.ascontiguousarray(np.asarray(chunk, dtype=self._audio_dtype).reshape(-1))
                if audio.size == 0:
                    continue
                sender.send(
                    pb_utils.InferenceResponse(
                        output_tensors=[
                            pb_utils.Tensor("audio", audio),
                            pb_utils.Tensor("sample_rate", np.array([self._tts.sample_rate], dtype=self._rate_dtype)),
                        ]
                    )
                )
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # ends the generator, and CosyVoice's work for it, when we leave early

    def _should_stop(self, sender):
        return sender.is_cancelled() or self._stopping.is_set()


def _first_string(array):
    value = array.reshape(-1)[0] if array.size > 0 else b""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
