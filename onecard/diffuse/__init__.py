"""`onecard diffuse`: a Stable Diffusion LoRA in your style or of your product, built on diffusers + peft.

Modules:
    config  the pydantic configs of each command (`CheckConfig`, `DiffuseConfig`, `SampleConfig`, `ExportConfig`).
    data    the data check (Pillow only): undecodable images, small sizes, duplicates, captions, EXIF rotation;
            and the training set as tensors (images resized and cropped to the resolution, with their captions).
    train   the pure pieces of LoRA training: load a diffusers pipeline folder, add the LoRA to the UNet's
            attention projections, cache latents, one noise-prediction step, save the LoRA in diffusers' layout.
    sample  generation: LoRAs given as PATH[:WEIGHT] loaded as adapters at their weights, one seed per image.
    export  the LoRA in the kohya layout (A1111/Forge, ComfyUI), with its alpha; safetensors written atomically.
    tiny    a random-weight SD-1.5-shaped pipeline folder with a CLIP BPE tokenizer, for tests and CPU benchmarks.
    report  what the CLI prints for a person.
    run     the entry points the CLI and web call: `check`, `train`, `sample`, `export`.
"""
