# syntax=docker/dockerfile:1
# The standalone runtime (`aistack serve`) and the load generator (`aistack bench`) as one
# image, for docker-compose.yml's `api` (profile standalone) and `bench` (profile bench)
# services. The model is not baked in: the compose stack mounts the models volume at
# /opt/aistack/models, so the image serves whatever version the volume holds.
FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/aistack
COPY pyproject.toml README.md ./
COPY src ./src
# tensorflow-serving-api (the gRPC engine's protos) declares a dependency on full TensorFlow;
# tensorflow-cpu, already installed, provides the same module (see the Makefile).
RUN pip install . \
 && pip install --no-deps "tensorflow-serving-api>=2.18,<2.22"

RUN useradd --system --uid 10001 --home-dir /var/lib/aistack --create-home aistack \
 && mkdir -p /opt/aistack/models /bench/results \
 && chown aistack:aistack /bench/results
USER aistack

ENV AISTACK_HOST=0.0.0.0 \
    AISTACK_PORT=8088 \
    AISTACK_VAR_DIR=/var/lib/aistack \
    AISTACK_MODEL_DIR=/opt/aistack/models/covid19

EXPOSE 8088
CMD ["aistack", "serve"]
