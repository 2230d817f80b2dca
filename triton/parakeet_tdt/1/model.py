"""Streaming ASR for the voice-agent server: NVIDIA Parakeet TDT 0.6B v2 on Triton's Python backend.

Contract (see ../config.pbtxt and ../../README.md):
  * one caller utterance is one Triton sequence; its id is the call id (a string), its first request
    has the START flag, its last the END flag (the END request may carry no audio);
  * input `audio_chunk` FP32 [n], 16 kHz mono in [-1, 1], 80-160 ms per request;
  * outputs `transcript` STRING [1] and `is_final` BOOL [1].

Every request ends with exactly one response carrying TRITONSERVER_RESPONSE_COMPLETE_FINAL:
  * a non-END request: when at least `partial_interval_ms` of audio has arrived since the last
    partial, one partial response (the transcript so far, is_final false); then a flag-only final;
  * the END request: one response with the utterance's full transcript, is_final true, and the final
    flag; the sequence's audio is dropped;
  * a request that fails: one error response with the final flag.

Parakeet TDT is an offline model, so a partial re-transcribes the utterance so far. That is cheap for
phone utterances (its RTFx is in the thousands on one GPU) and gives the same text the final will
give for the same audio.
"""

import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils

SAMPLE_RATE = 16000
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

# Control tensors declared in config.pbtxt (sequence_batching.control_input).
START_CONTROL = "START"
END_CONTROL = "END"
CORRID_CONTROL = "CORRID"


class InputError(Exception):
    """A request the model cannot serve as sent: answered with INVALID_ARG."""


class ParakeetTranscriber:
    """The NeMo model behind one method, so tests can replace it without NeMo installed."""

    def __init__(self, model_path, pretrained_name, device):
        # Imported here: NeMo and torch are heavy, and only the real model needs them.
        import torch
        import nemo.collections.asr as nemo_asr

        self._torch = torch
        map_location = torch.device(device)
        if model_path and os.path.isfile(model_path):
            model = nemo_asr.models.ASRModel.restore_from(restore_path=model_path, map_location=map_location)
        elif pretrained_name:
            model = nemo_asr.models.ASRModel.from_pretrained(model_name=pretrained_name, map_location=map_location)
        else:
            raise FileNotFoundError(f"no .nemo file at {model_path!r} and no pretrained_name to load instead")
        model.eval()
        self._model = model

    def transcribe(self, audio_16k_float32):
        """Transcribes one utterance (16 kHz mono float32) and returns its text."""
        with self._torch.inference_mode():
            result = self._model.transcribe([audio_16k_float32], batch_size=1, verbose=False)
        # NeMo 2.x returns a list of Hypothesis; some 1.x transducer models return (best, all).
        if isinstance(result, tuple):
            result = result[0]
        first = result[0] if len(result) > 0 else ""
        return str(getattr(first, "text", first)).strip()


class _Utterance:
    """The audio of one open sequence."""

    def __init__(self, now):
        self._chunks = []
        self.samples = 0
        self.samples_at_last_partial = 0
        self.last_seen = now

    def append(self, audio, now):
        if audio.size > 0:
            self._chunks.append(audio)
            self.samples += audio.size
        self.last_seen = now

    def audio(self):
        # Collapse to one array so the next call only concatenates what arrived since.
        if len(self._chunks) != 1:
            self._chunks = [np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)]
        return self._chunks[0]


class TritonPythonModel:
    def initialize(self, args):
        self.model_config = model_config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(model_config):
            raise pb_utils.TritonModelException("parakeet_tdt must be decoupled (model_transaction_policy { decoupled: True })")

        params = {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}
        self._partial_samples = int(float(params.get("partial_interval_ms", "160")) * SAMPLE_RATE / 1000)
        self._min_samples = int(float(params.get("min_audio_ms", "100")) * SAMPLE_RATE / 1000)
        # Triton frees a sequence slot after this much idle time; its audio here goes with it.
        idle_us = int(model_config.get("sequence_batching", {}).get("max_sequence_idle_microseconds", 0) or 0)
        self._idle_seconds = idle_us / 1e6 if idle_us > 0 else 60.0

        self._transcript_dtype = pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(model_config, "transcript")["data_type"])
        self._is_final_dtype = pb_utils.triton_string_to_numpy(pb_utils.get_output_config_by_name(model_config, "is_final")["data_type"])

        model_path = params.get("model_path", "")
        if model_path and not os.path.isabs(model_path):
            model_path = os.path.join(args["model_repository"], args["model_version"], model_path)
        device = f"cuda:{args['model_instance_device_id']}" if args.get("model_instance_kind") == "GPU" else "cpu"

        self._now = time.monotonic
        self._sequences = {}
        self._asr = ParakeetTranscriber(
            model_path=model_path, pretrained_name=params.get("pretrained_name", ""), device=device
        )
        pb_utils.Logger.log_info(f"parakeet_tdt ready on {device}: partials every {self._partial_samples} samples")

    def execute(self, requests):
        self._forget_idle_sequences()
        for request in requests:
            sender = request.get_response_sender()
            try:
                self._serve(request, sender)
            except InputError as error:
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"parakeet_tdt: {error}", pb_utils.TritonError.INVALID_ARG)), flags=FINAL)
            except Exception as error:  # one failing request must not take the others of the batch down
                pb_utils.Logger.log_error(f"parakeet_tdt: request {request.request_id()!r} failed: {error!r}")
                sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"parakeet_tdt: {error}")), flags=FINAL)
        # Decoupled: every response went through a sender.
        return None

    def finalize(self):
        self._sequences.clear()

    def _serve(self, request, sender):
        sequence_id, start, end = self._sequence_of(request)
        if request.is_cancelled():
            # The client gave up on this utterance (barge-in, hang-up): its audio is of no further use.
            self._sequences.pop(sequence_id, None)
            sender.send(flags=FINAL)
            return

        audio = self._audio_of(request)
        now = self._now()
        utterance = self._sequences.get(sequence_id)
        if start or utterance is None:
            # START always begins a fresh utterance, even if the previous one never got its END. A
            # continuation we hold nothing for (its audio aged out) starts over from what arrives.
            utterance = self._sequences[sequence_id] = _Utterance(now)
        utterance.append(audio, now)

        if end:
            del self._sequences[sequence_id]
            sender.send(self._response(self._transcribe(utterance.audio()), True), flags=FINAL)
            return

        if utterance.samples - utterance.samples_at_last_partial >= self._partial_samples:
            utterance.samples_at_last_partial = utterance.samples
            sender.send(self._response(self._transcribe(utterance.audio()), False))
        sender.send(flags=FINAL)

    def _sequence_of(self, request):
        """(sequence id, START, END): from the request itself, else from the control tensors."""
        flags = request.flags()
        start = bool(flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START) or _control_is_set(request, START_CONTROL)
        end = bool(flags & pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END) or _control_is_set(request, END_CONTROL)
        sequence_id = request.correlation_id()
        if sequence_id in (None, 0, ""):
            corrid = pb_utils.get_input_tensor_by_name(request, CORRID_CONTROL)
            sequence_id = _first_string(corrid.as_numpy()) if corrid is not None else ""
        if sequence_id in (None, 0, ""):
            raise InputError("requests must belong to a sequence (set sequence_id to the call id)")
        return sequence_id, start, end

    def _audio_of(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, "audio_chunk")
        if tensor is None:
            raise InputError("missing input 'audio_chunk'")
        audio = tensor.as_numpy()
        if audio.dtype != np.float32:
            raise InputError(f"'audio_chunk' must be FP32, got {audio.dtype}")
        return np.ascontiguousarray(audio.reshape(-1))

    def _transcribe(self, audio):
        # Too little audio to hold a word, and NeMo's feature extractor rejects near-empty input.
        if audio.size < self._min_samples:
            return ""
        return self._asr.transcribe(audio)

    def _response(self, text, is_final):
        return pb_utils.InferenceResponse(
            output_tensors=[
                pb_utils.Tensor("transcript", np.array([text.encode("utf-8")], dtype=self._transcript_dtype)),
                pb_utils.Tensor("is_final", np.array([is_final], dtype=self._is_final_dtype)),
            ]
        )

    def _forget_idle_sequences(self):
        # A client that vanished mid-utterance never sends END; Triton frees its slot after
        # max_sequence_idle_microseconds and so do we.
        cutoff = self._now() - self._idle_seconds
        for sequence_id in [sid for sid, utterance in self._sequences.items() if utterance.last_seen < cutoff]:
            del self._sequences[sequence_id]


def _control_is_set(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return tensor is not None and bool(np.any(tensor.as_numpy()))


def _first_string(array):
    value = array.reshape(-1)[0] if array.size > 0 else b""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)
