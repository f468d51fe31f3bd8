"""`onecard diffuse`: a Stable Diffusion LoRA in your style or of your product, built on diffusers + peft.

Modules:
    config    the pydantic configs of each command (`CheckConfig`, `CaptionConfig`, `DiffuseConfig`, `SampleConfig`,
              `EvalConfig`, `ExportConfig`).
    base      `--base sd15|sdxl|folder|hub id|file.safetensors` to local files and a family (fit's catalog names).
    data      the data check (Pillow only): undecodable images, small sizes, duplicates and near-duplicates,
              captions, EXIF rotation, the contact sheet; the training set as tensors, square or in aspect buckets;
              captions written from a template or a describer.
    plan      memory settings from `onecard fit` for training and sampling, and fit's out-of-memory ladders.
    train     the pure pieces of LoRA training: load a pipeline, add the LoRA to the UNet's attention projections,
              cache latents, encode prompts (SD 1.5 and SDXL), one noise-prediction loss (noise offset, Min-SNR),
              save the LoRA in diffusers' layout.
    prior     prior preservation: class images drawn by the base once and cached.
    validate  validation grids: prompts x fixed seeds, one PNG per checkpoint.
    evaluate  CLIP score, subject similarity (CLIP-I) and class drift.
    sample    generation: LoRAs given as PATH[:WEIGHT] loaded as adapters at their weights, one seed per image.
    export    the LoRA in the kohya layout (A1111/Forge, ComfyUI), with its alpha; safetensors written atomically.
    tiny      random-weight SD-1.5- and SDXL-shaped pipelines and a tiny CLIP, for tests and CPU benchmarks.
    report    what the CLI prints for a person.
    runs      what a train run leaves in its folder, and finding such a run again.
    training  the `train` flow: set up -> plan -> work -> save, one recorded run.
    run       the entry points the CLI and web call: `check`, `caption`, `train`, `sample`, `evaluate`, `export`.
"""
