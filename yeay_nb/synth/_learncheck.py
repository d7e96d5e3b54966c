# TEMPORARY learnability probe (to be deleted): train a from-scratch light detector on the wardrobe.
import json, sys, time, os
import numpy as np, torch, cv2
import torchvision
from pathlib import Path
from types import SimpleNamespace
from yeay_nb.taxonomy import load_taxonomy

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
ITERS = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "500,1000,2000,4000").split(",")]
dev = "cuda" if torch.cuda.is_available() else "cpu"
t = time.time()
f = SimpleNamespace(objects_json="work/learn/objects.json", images_dir=Path("work/learn/images"))
print("gen", time.time() - t, flush=True)
tax = load_taxonomy()
objs = json.load(open(f.objects_json))
recs = []
for rec in objs:
    boxes, labels = [], []
    for o in rec["objects"]:
        c = tax.class_for(o["names"], o["synsets"])
        if c is None:
            continue
        boxes.append([o["x"], o["y"], o["x"] + o["w"], o["y"] + o["h"]]); labels.append(c)
    recs.append((rec["image_id"], boxes, labels))
used = sorted({l for _, _, ls in recs for l in ls})
cid = {c: i + 1 for i, c in enumerate(used)}
names = [tax.classes[c] for c in used]
imgs = [torch.from_numpy(cv2.imread(str(f.images_dir / f"{i}.jpg"))[:, :, ::-1].copy()).permute(2, 0, 1) for i, _, _ in recs]
nval = 200
train, val = list(range(nval, N)), list(range(nval))
model = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_fpn(
    weights=None, weights_backbone=None, num_classes=len(used) + 1, min_size=256, max_size=320,
    rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, box_batch_size_per_image=128).to(dev)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
rng = np.random.default_rng(0)

def iou(a, b):
    x1, y1 = np.maximum(a[:, None, 0], b[None, :, 0]), np.maximum(a[:, None, 1], b[None, :, 1])
    x2, y2 = np.minimum(a[:, None, 2], b[None, :, 2]), np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    aa = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]); bb = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (aa[:, None] + bb[None, :] - inter + 1e-9)

def evaluate():
    model.eval()
    per_cls = {c: ([], 0) for c in cid.values()}
    scores = {c: [] for c in cid.values()}; npos = {c: 0 for c in cid.values()}
    with torch.no_grad():
        for k in val:
            iid, bs, ls = recs[k]
            out = model([imgs[k].to(dev).float() / 255])[0]
            pb, ps, pl = out["boxes"].cpu().numpy(), out["scores"].cpu().numpy(), out["labels"].cpu().numpy()
            gb = np.array(bs, np.float64).reshape(-1, 4); gl = np.array([cid[l] for l in ls])
            for c in cid.values():
                g = gb[gl == c]; npos[c] += len(g)
                sel = pl == c; d, s_ = pb[sel], ps[sel]
                order = np.argsort(-s_); d, s_ = d[order], s_[order]
                used_g = np.zeros(len(g), bool)
                m = iou(d, g) if len(g) and len(d) else np.zeros((len(d), len(g)))
                for j in range(len(d)):
                    tp = 0
                    if len(g):
                        cand = np.where((m[j] >= 0.5) & ~used_g)[0]
                        if len(cand):
                            used_g[cand[np.argmax(m[j][cand])]] = True; tp = 1
                    scores[c].append((s_[j], tp))
    model.train()
    per = {}
    for c, n in zip(cid.values(), names):
        if npos[c] == 0:
            continue
        sc = sorted(scores[c], key=lambda x: -x[0]); tps = np.array([t for _, t in sc]); 
        if len(tps) == 0:
            per[n] = 0.0; continue
        ctp = np.cumsum(tps); rec = ctp / npos[c]; prec = ctp / np.arange(1, len(tps) + 1)
        ap = 0.0
        for r in np.linspace(0, 1, 101):
            p = prec[rec >= r]; ap += (p.max() if len(p) else 0) / 101
        per[n] = ap
    return float(np.mean(list(per.values()))), per

model.train()
t = time.time()
for it in range(1, max(ITERS) + 1):
    lr = 1e-3 * min(1.0, it / 100)
    for g in opt.param_groups: g["lr"] = lr
    batch = rng.choice(train, 4, replace=False)
    ims, tg = [], []
    for k in batch:
        im = imgs[k].float() / 255
        b = torch.tensor(recs[k][1], dtype=torch.float32).reshape(-1, 4)
        if rng.random() < 0.5:
            im = im.flip(-1); b = b[:, [2, 1, 0, 3]] * torch.tensor([-1, 1, -1, 1]) + torch.tensor([320, 0, 320, 0])
        ims.append(im.to(dev)); tg.append({"boxes": b.to(dev), "labels": torch.tensor([cid[l] for l in recs[k][2]], dtype=torch.int64).to(dev)})
    loss = sum(model(ims, tg).values())
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0); opt.step()
    if it % 100 == 0:
        print(it, round(loss.item(), 3), round(time.time() - t, 1), flush=True)
    if it in ITERS:
        ap, per = evaluate()
        print(f"ITER {it} AP50 {ap:.3f}", {k: round(v, 2) for k, v in per.items()}, flush=True)
