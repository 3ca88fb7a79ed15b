"""The serving path end to end: a real TorchServe on 127.0.0.1, called over HTTP."""

import asyncio
import json
import os
import signal
import time
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml

from neuroscan.classes import CLASSES
from tests.images import encode, noise_image

OCTET = {"Content-Type": "application/octet-stream"}


def predict(server, body: bytes, **kwargs) -> httpx.Response:
    headers = {**OCTET, **server.headers(), **kwargs.pop("headers", {})}
    return httpx.post(f"{server.inference_url}/predictions/{server.model_name}", content=body,
                      headers=headers, timeout=60, **kwargs)


def workers(server) -> list[dict]:
    response = server.management("GET", f"/models/{server.model_name}")
    response.raise_for_status()
    return response.json()[0]["workers"]


def wait_for(condition, timeout: float = 120.0, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(step)
    return result


def test_ping(torchserve):
    response = httpx.get(f"{torchserve.inference_url}/ping", headers=torchserve.headers(), timeout=10)
    assert response.status_code == 200 and response.json()["status"] == "Healthy"


def test_served_model_is_as_accurate_as_its_model_card_on_the_whole_validation_split(torchserve, mri_root):
    """All 1,142 validation slices over HTTP. The served fp32 ONNX graph answers as the eager model,
    99.12% for 2.3.0 (MODEL_CARD.md): the bound, 98.5%, leaves room for the opt-in int8
    graph, while a broken preprocessing, channel order or label mapping costs far more."""
    from training.split import load_split

    val = load_split().val
    answers = asyncio.run(predict_all(torchserve, [(mri_root / rel).read_bytes() for rel in val]))
    truth = [rel.split("/")[0] for rel in val]
    accuracy = sum(a["label"] == t for a, t in zip(answers, truth)) / len(val)
    print(f"served accuracy {accuracy:.2%} on {len(val)} validation slices")
    assert len(val) == 1142 and accuracy >= 0.985
    for answer in answers:
        assert set(answer["probabilities"]) == set(CLASSES)
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert answer["model_version"]
    # 0.09% of validation slices trip the not-MRI check and 1.6% are outside the validated domain (MODEL_CARD.md)
    assert sum(not a["is_mri"] for a in answers) <= 0.01 * len(val)
    assert sum(not a["in_domain"] for a in answers) <= 0.03 * len(val)


async def predict_all(server, bodies: list[bytes], parallel: int = 8) -> list[dict]:
    """Every body's answer (in order), ``parallel`` requests in flight, so batches fill as in production."""
    gate = asyncio.Semaphore(parallel)
    async with httpx.AsyncClient(timeout=120, headers={**OCTET, **server.headers()}) as client:
        async def one(body: bytes) -> dict:
            async with gate:
                response = await client.post(f"{server.inference_url}/predictions/{server.model_name}", content=body)
                assert response.status_code == 200, response.text
                return response.json()

        return await asyncio.gather(*(one(body) for body in bodies))


def test_request_id_reaches_the_handler_log(torchserve, val_images):
    """The id the dashboard sends as X-Request-ID is logged by the handler next to its answer."""
    request_id = f"trace-{time.monotonic_ns()}"
    answer = predict(torchserve, val_images["glioma"][0].read_bytes(), headers={"X-Request-ID": request_id}).json()
    log = torchserve.home / "logs" / "model_log.log"

    def logged_line() -> str | None:
        return next((line for line in log.read_text().splitlines() if request_id in line), None)

    line = wait_for(logged_line, timeout=30)
    assert f'"request_id": "{request_id}", "label": "{answer["label"]}"' in line


def test_multipart_upload(torchserve, val_images):
    path = val_images["notumor"][0]
    response = httpx.post(f"{torchserve.inference_url}/predictions/brain_tumor", headers=torchserve.headers(),
                          files={"file": (path.name, path.read_bytes(), "image/jpeg")}, timeout=60)
    assert response.status_code == 200
    assert response.json()["probabilities"] == predict(torchserve, path.read_bytes()).json()["probabilities"]


def test_explanation_has_a_heatmap(torchserve, val_images):
    body = val_images["glioma"][0].read_bytes()
    response = httpx.post(f"{torchserve.inference_url}/explanations/brain_tumor", content=body,
                          headers={**OCTET, **torchserve.headers()}, timeout=60)
    assert response.status_code == 200
    assert response.json()["heatmap_png"].startswith("iVBOR")  # base64 of the PNG signature


def test_concurrent_requests_are_batched(torchserve, val_images):
    bodies = [p.read_bytes() for paths in val_images.values() for p in paths][:32]
    before = torchserve.metric_values("HandlerBatchSize")

    async def fire() -> list[int]:
        async with httpx.AsyncClient(timeout=120, headers={**OCTET, **torchserve.headers()}) as client:
            url = f"{torchserve.inference_url}/predictions/brain_tumor"
            responses = await asyncio.gather(*(client.post(url, content=b) for b in bodies))
        return [r.status_code for r in responses]

    assert asyncio.run(fire()) == [200] * len(bodies)
    after = torchserve.metric_values("HandlerBatchSize")
    sum_key = next(k for k in after if k.startswith("HandlerBatchSize_sum"))
    count_key = next(k for k in after if k.startswith("HandlerBatchSize_count"))
    items = after[sum_key] - before.get(sum_key, 0)
    batches = after[count_key] - before.get(count_key, 0)
    assert items == len(bodies)
    assert batches < len(bodies), "every request went through alone: no dynamic batching"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "empty_input"),
        (b"%PDF-1.4 definitely not an image", 415, "unsupported_type"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, 422, "corrupt_image"),
    ],
)
def test_bad_input_gets_a_4xx_and_the_server_keeps_serving(torchserve, val_images, body, status, code):
    response = predict(torchserve, body)
    assert response.status_code == status
    assert response.json()["code"] == code and response.json()["error"]
    assert predict(torchserve, val_images["pituitary"][0].read_bytes()).status_code == 200


def test_truncated_real_image_is_refused(torchserve, val_images):
    body = val_images["glioma"][1].read_bytes()
    response = predict(torchserve, body[: len(body) // 2])
    assert response.status_code == 422 and response.json()["code"] == "corrupt_image"


def test_oversize_upload_is_refused_by_torchserve(torchserve):
    response = predict(torchserve, b"\xff\xd8\xff" + os.urandom(6 * 1024 * 1024))
    assert response.status_code == 413
    assert predict(torchserve, encode(noise_image(), "PNG")).status_code == 200


def test_non_mri_image_is_flagged(torchserve):
    answer = predict(torchserve, encode(noise_image(), "PNG")).json()
    assert answer["is_mri"] is False and answer["mri_reason"]


def test_requests_without_tokens_are_refused(torchserve):
    management = httpx.get(f"{torchserve.management_url}/models", timeout=10)
    inference = httpx.post(f"{torchserve.inference_url}/predictions/brain_tumor", content=b"x", headers=OCTET)
    wrong = httpx.get(f"{torchserve.management_url}/models", headers={"Authorization": "Bearer nope"})
    assert (management.status_code, inference.status_code, wrong.status_code) == (400, 400, 400) or all(
        r.status_code in (401, 403) for r in (management, inference, wrong)), (management.text, inference.text)
    assert torchserve.management("GET", "/models").status_code == 200


def test_scale_workers_up_and_down(torchserve):
    start = len(workers(torchserve))
    for target in (start + 1, start):
        response = torchserve.management("PUT", f"/models/brain_tumor?min_worker={target}&synchronous=true")
        assert response.status_code == 200, response.text
        wait_for(lambda n=target: sum(w["status"] == "READY" for w in workers(torchserve)) == n
                 and len(workers(torchserve)) == n)


def test_killed_worker_is_replaced(torchserve, val_images):
    victim = workers(torchserve)[0]
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: all(w["status"] == "READY" and w["pid"] != victim["pid"] for w in workers(torchserve))
             and len(workers(torchserve)) >= 1, timeout=180)
    body = val_images["meningioma"][0].read_bytes()
    assert [predict(torchserve, body).status_code for _ in range(8)] == [200] * 8


def rewrite_archive(store: Path, target: str, name: str, edit) -> None:
    """``store/target``: the shipped archive with member ``name`` replaced by ``edit(its bytes)``."""
    with zipfile.ZipFile(store / "brain_tumor.mar") as source, zipfile.ZipFile(store / target, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            out.writestr(info, edit(data) if info.filename == name else data)


def test_register_a_second_version_and_switch_default(torchserve):
    store = torchserve.home / "model_store"

    def version_2(data: bytes) -> bytes:
        manifest = json.loads(data)
        manifest["model"]["modelVersion"] = "2.0.0-test"
        return json.dumps(manifest).encode()

    rewrite_archive(store, "brain_tumor_v2.mar", "MAR-INF/MANIFEST.json", version_2)
    response = torchserve.management("POST", "/models?url=brain_tumor_v2.mar&initial_workers=1&synchronous=true")
    assert response.status_code == 200, response.text
    assert torchserve.management("PUT", "/models/brain_tumor/2.0.0-test/set-default").status_code == 200
    described = torchserve.management("GET", "/models/brain_tumor").json()
    assert described[0]["modelVersion"] == "2.0.0-test"
    original = json.loads(zipfile.ZipFile(store / "brain_tumor.mar").read("MAR-INF/MANIFEST.json"))
    back = original["model"]["modelVersion"]
    assert torchserve.management("PUT", f"/models/brain_tumor/{back}/set-default").status_code == 200
    assert torchserve.management("DELETE", "/models/brain_tumor/2.0.0-test").status_code == 200


def test_custom_metrics_on_the_prometheus_endpoint(torchserve, val_images):
    predict(torchserve, val_images["glioma"][0].read_bytes())
    predict(torchserve, b"garbage bytes")
    text = httpx.get(f"{torchserve.metrics_url}/metrics", timeout=10).text
    assert 'PredictionsPerClass{ModelName="brain_tumor",class="glioma"' in text
    assert 'RejectedInputs{ModelName="brain_tumor",reason="unsupported_type"' in text
    assert "HandlerBatchSize_bucket" in text and "PreprocessTimeMs_bucket" in text
    assert "ts_inference_requests_total" in text


# ---- one real dynamic batch holding good and bad bodies, on a model that refuses non-MRI pictures ----
STRICT = "brain_tumor_strict"
STRICT_BATCH = 8


@pytest.fixture(scope="module")
def strict_model(torchserve) -> str:
    """The shipped archive registered under a second name with ``reject_non_mri: true``, one worker and
    batches of exactly 8 within 10 s, so 8 concurrent requests are one batch whatever the CPU load."""
    def strict(data: bytes) -> bytes:
        config = yaml.safe_load(data)
        config.update(minWorkers=1, maxWorkers=1, batchSize=STRICT_BATCH, maxBatchDelay=10_000)
        config["handler"]["reject_non_mri"] = True
        return yaml.safe_dump(config).encode()

    rewrite_archive(torchserve.home / "model_store", f"{STRICT}.mar", "model-config.yaml", strict)
    response = torchserve.management(
        "POST", f"/models?url={STRICT}.mar&model_name={STRICT}&initial_workers=1&synchronous=true")
    assert response.status_code == 200, response.text
    yield STRICT
    torchserve.management("DELETE", f"/models/{STRICT}")


def test_one_dynamic_batch_answers_each_item_with_its_own_status(torchserve, strict_model, val_images):
    """Good slices, bad bodies and a non-MRI picture in one batch: each gets its own status, and the good
    ones the very answer they get alone (a bad neighbour must neither fail nor shift them)."""
    good = [val_images[name][0].read_bytes() for name in ("glioma", "pituitary", "meningioma", "notumor")]
    truncated = val_images["glioma"][1].read_bytes()
    cases = [(good[0], 200, None), (b"", 400, "empty_input"), (b"%PDF-1.4 not an image", 415, "unsupported_type"),
             (good[1], 200, None), (truncated[: len(truncated) // 2], 422, "corrupt_image"),
             (encode(noise_image(), "PNG"), 422, "not_mri"), (good[2], 200, None), (good[3], 200, None)]
    assert len(cases) == STRICT_BATCH
    ids = [f"mixed-{time.monotonic_ns()}-{i}" for i in range(len(cases))]

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120, headers={**OCTET, **torchserve.headers()}) as client:
            url = f"{torchserve.inference_url}/predictions/{strict_model}"
            return await asyncio.gather(*(client.post(url, content=body, headers={"X-Request-ID": rid})
                                          for (body, _, _), rid in zip(cases, ids)))

    responses = asyncio.run(fire())
    assert [r.status_code for r in responses] == [status for _, status, _ in cases], [r.text for r in responses]
    for (body, status, code), response in zip(cases, responses):
        if code is not None:
            assert response.json()["code"] == code and response.json()["error"]
            continue
        alone = predict(torchserve, body).json()  # the default model, batched with nobody
        assert response.json()["label"] == alone["label"]
        assert response.json()["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-3)
    batch_line = wait_for(lambda: next((line for line in (torchserve.home / "logs" / "model_log.log").read_text()
                                        .splitlines() if ids[0] in line), None), timeout=30)
    assert all(rid in batch_line for rid in ids), "the 8 requests were not answered as one batch"
