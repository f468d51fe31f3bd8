"""detect: a YOLO detector on your labelled images, on ultralytics (AGPL-3.0), fitted to the card and recorded.

    config.py     the configs: CheckConfig, DetectConfig (train), EvalConfig, PredictConfig, ExportConfig
    dataset.py    data.yaml and its splits read; the data check (every bad image and label line by file and line)
    convert.py    a COCO detection JSON and its images to the YOLO layout (class ids 0..n-1, bad input named by id)
    synthetic.py  a seeded shapes-on-textures data set in YOLO layout (tests, benchmarks, a first look)
    ultra.py      ultralytics set up offline (settings, fonts, stderr logging); model refs; its metric names
    plan.py       batch, image size and AMP from `onecard.fit`; the out-of-memory ladder
    report.py     the check's and the evaluation's tables; class and box-size histograms
    latency.py    export (ultralytics exporter) and ms per image at batch 1, PyTorch against ONNX Runtime
    run.py        the entry points: check, train (ultralytics' trainer), resume_config, evaluate, predict, export
"""
