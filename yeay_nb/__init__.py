"""yeay_nb: a Jupyter-centric workbench for clothing detection and person segmentation
in short user videos.

The data flow (each step talks to the next only through files named in params)::

    raw annotations --convert--> coco.json (+ summary.json)
    coco.json --train--> checkpoint.pt (+ metrics.jsonl, eval.json)
    videos --infer(checkpoint)--> <video_id>.json (+ pictures)
"""

__version__ = "0.1.0"
