"""detect: a YOLO detector on your labelled images, on ultralytics (AGPL-3.0), fitted to the card and recorded.

    config.py     the configs: CheckConfig, DetectConfig (train), EvalConfig, PredictConfig, ExportConfig, BenchConfig
    dataset.py    data.yaml and its splits read; the data check (every bad image and label line by file and line)
    convert.py    a COCO JSON or a Label Studio JSON export and its images to the YOLO layout (bad input named by id)
    synthetic.py  a seeded shapes-on-textures data set in YOLO layout (tests, benchmarks, a first look)
    ultra.py      ultralytics set up offline (settings, fonts, stderr logging); model refs; its metric names
    plan.py       batch, image size and AMP from `onecard.fit`; the out-of-memory ladder
    report.py     the check's and the evaluation's tables; class and box-size histograms
    latency.py    export (ultralytics' exporter); each format on its own runtime, timed at equal threads
    run.py        the entry points: check, train (ultralytics' trainer), resume_config, evaluate, predict
    deploy.py     the entry points export (checked box by box against PyTorch, mAP kept) and bench
"""
