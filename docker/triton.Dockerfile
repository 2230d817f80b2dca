# Triton Inference Server for the voice agent's GPU pipeline (model repository: ../triton/).
#
# Base: NGC's vLLM image (Triton + vLLM backend + Python backend). It carries no other backend, so
# the ONNX Runtime backend that silero_vad needs is copied in from the same release's full image, and
# the Python packages of the two Python-backend models (NeMo for parakeet_tdt, CosyVoice for tts)
# are installed on top, without touching the torch/vLLM stack the image ships.
#
#   docker build -f docker/triton.Dockerfile -t voice-agent-triton .
#   docker run --gpus all --shm-size=2g -p 8001:8001 -p 8000:8000 -p 8002:8002 \
#     -v "$PWD/triton:/models" -v "$HOME/.cache/huggingface:/root/.cache/huggingface" \
#     voice-agent-triton
#
# Not built in this repository's CI (no GPU, no NGC access there): pick TRITON_VERSION from NGC's
# release notes (its bundled vLLM must support Qwen3, i.e. vLLM >= 0.8.5) and pin COSYVOICE_COMMIT.
ARG TRITON_VERSION=25.08

FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3 AS full

FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-vllm-python-py3

# silero_vad: the ONNX Runtime backend, from the same release (a backend is a folder under backends/).
COPY --from=full /opt/tritonserver/backends/onnxruntime /opt/tritonserver/backends/onnxruntime

RUN apt-get update \
 && apt-get install -y --no-install-recommends git git-lfs sox libsox-dev ffmpeg \
 && rm -rf /var/lib/apt/lists/*

# Whatever gets installed below must not replace the image's torch / vLLM stack: pin what is there.
RUN pip freeze | grep -iE '^(torch|torchvision|triton|vllm|xformers|flashinfer[a-z_-]*|transformers|tokenizers|numpy|nvidia-[a-z0-9-]+)==' \
      > /opt/keep-installed.txt \
 && TORCH_VERSION="$(python3 -c 'import torch; print(torch.__version__.split("+")[0])')" \
 && pip install --no-cache-dir -c /opt/keep-installed.txt "torchaudio==${TORCH_VERSION}"

# parakeet_tdt: NeMo's ASR collection.
RUN pip install --no-cache-dir -c /opt/keep-installed.txt "nemo_toolkit[asr]"

# tts: CosyVoice is used from a checkout (with its Matcha-TTS submodule), at the path config.pbtxt
# names in `cosyvoice_repo`. Its requirements.txt pins a torch stack of its own, so only the package
# names are taken from it (minus torch, training and serving extras) and resolved against the pins.
ARG COSYVOICE_COMMIT=main
RUN git clone https://github.com/FunAudioLLM/CosyVoice.git /opt/CosyVoice \
 && cd /opt/CosyVoice \
 && git checkout "${COSYVOICE_COMMIT}" \
 && git submodule update --init --recursive \
 && grep -vE '^\s*(#|--|$)' requirements.txt \
    | sed -E 's/[[:space:];].*$//; s/[=<>~!].*$//' \
    | grep -viE '^(torch|torchaudio|torchvision|deepspeed|tensorrt[a-z0-9_-]*|gradio|fastapi|fastapi-cli|uvicorn|grpcio|grpcio-tools|tensorboard|onnxruntime)$' \
    > /opt/cosyvoice-requirements.txt \
 && pip install --no-cache-dir -c /opt/keep-installed.txt -r /opt/cosyvoice-requirements.txt

ENV PYTHONUNBUFFERED=1
EXPOSE 8000 8001 8002
CMD ["tritonserver", "--model-repository=/models", "--log-info=true"]
