"""Where streaming loses at equal length: label accuracy per 4-frame block, full sequence vs stream vs stream with
a 16-frame first-block lookahead (selection seeds 723-724, range video-stream-selection; n = 100, guidance 4,
dpmpp-2m 12 karras steps, the bench's noise and labels).

    python docs/bench/video/first_block.py --models video-dit /tmp/vtrain/run5/model --out docs/bench/video/first-block
    python docs/bench/video/first_block.py --seeds 740 741 --modes full "stream, lookahead 16, overlap 1" \
        --out docs/bench/video/first-block-overlap      (selection seeds of range video-stream-selection-3)
    python docs/bench/video/first_block.py --seeds 789 790 --modes full "stream, lookahead 16, overlap 1" \
        "stream on the full solve's blocks, overlap 1" --out docs/bench/video/teacher-forced
        (selection seeds of range video-stream-selection-6: the stream against the full solve's own blocks as context)

``video-dit``: the shipped model; another path: a model stem (e.g. the first-block-form continuation, trained by
``python -m effdiff.video.train --preset video-dit --init <video-dit> --lr 3e-4 --steps 3000 --seed 5
--block-fraction 0.4 --first-block-fraction 0.2``). Selection evidence, not a confirm.
"""
import argparse
import json
from pathlib import Path

import torch

from effdiff.bench.video import generate, label_acc_per_block, labels_for, teacher_forced
from effdiff.bench.provenance import provenance
from effdiff.video.evaluator import VideoEvaluator
from effdiff.video.sampling import VideoModel
from effdiff.checkpoint import tensors_sha256

MODES = {"full": ("full", {}), "stream": ("stream", {}), "stream, lookahead 16": ("stream", {"lookahead": 16}),
         "stream, lookahead 16, overlap 1": ("stream", {"lookahead": 16, "overlap": 1}),
         "stream on the full solve's blocks, overlap 1": ("teacher", {"overlap": 1}),
         **{f"stream, lookahead 16, overlap 1, second block at guidance {w}": ("stream", {"lookahead": 16, "overlap": 1,
                                                                                    "scale_second": float(w)})
            for w in (5, 6, 8)}}


def per_block(ev, x, labels, bf: int = 4) -> dict:
    _, logits, _ = ev.features(x)
    pred = logits.argmax(-1)
    s = ev.score(x, labels)
    return {"label_acc_per_block": label_acc_per_block(pred, labels, bf),
            **{k: s[k] for k in ("frame_fd", "clip_fd", "identity", "label_acc", "speed", "accel")}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["video-dit"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[723, 724])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--modes", nargs="+", default=list(MODES)[:3], choices=list(MODES))
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    ev = VideoEvaluator.shipped()
    res = {"provenance": provenance(), "seeds": a.seeds, "n": a.n, "guidance": 4.0, "models": {}}
    for m in a.models:
        vm = VideoModel.load(None if m == "video-dit" else m)
        rows = {}
        for name in a.modes:
            mode, options = MODES[name]
            vm.stream_options = dict(options)
            make = (lambda s: vm.decode(teacher_forced(vm, a.n, s, 12, "dpmpp-2m", 4.0, **options))) \
                if mode == "teacher" else (lambda s: generate(vm, 16, mode, a.n, s, 12, "dpmpp-2m", 4.0))
            rows[name] = {s: per_block(ev, make(s), labels_for(a.n)) for s in a.seeds}
            print(m, name, json.dumps(rows[name]), flush=True)
        res["models"][m] = {"sha256": tensors_sha256(vm.den.net.state_dict()), "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "first_block.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
