"""The zoo's vision transformer: DigitViT (assets/zoo/torch_models.py) on the 28x28 digits, so every user has a
ViT whose attention the Attention tab can lay over the picture. Saved as a state_dict like the other PyTorch
samples; the manifest names its class."""

from __future__ import annotations

from analyzers.samples import zoo_module

common = zoo_module("common")
data = zoo_module("data")
models = zoo_module("torch_models")
build_torch = zoo_module("build_torch")
keras_side = zoo_module("build_keras")  # shared manifest fields only; never imports TensorFlow here

VIT_KWARGS = {"num_classes": 10, "image_size": 28, "patch_size": 4, "d_model": 48, "nhead": 4, "num_layers": 3,
              "dim_feedforward": 96, "dropout": 0.1}
EPOCHS = 30  # about 3 minutes on one core


def shifted(torch, x, g):
    """Each image moved by up to 2 pixels in each direction (zeros fill in): the training set is 1,437 digits."""
    out = torch.zeros_like(x)
    dy, dx = torch.randint(-2, 3, (2,), generator=g).tolist()
    src = x[..., max(0, -dy):x.shape[-2] - max(0, dy), max(0, -dx):x.shape[-1] - max(0, dx)]
    out[..., max(0, dy):max(0, dy) + src.shape[-2], max(0, dx):max(0, dx) + src.shape[-1]] = src
    return out


def build_digits_vit_torch(threads: int = 2) -> list[dict]:
    """DigitViT trained on the digits split the CNNs use (shifted copies each batch); at least 90% held-out."""
    torch = build_torch.torch_module(threads)
    torch.manual_seed(7)
    split = data.digits_split()
    pngs = common.digit_sample_pngs(split.x_test, split.y_test)
    x_train = torch.from_numpy(split.x_train.astype("float32") / 255.0)[:, None]
    y_train = torch.from_numpy(split.y_train)
    x_test = torch.from_numpy(split.x_test.astype("float32") / 255.0)[:, None]
    model = models.DigitViT(**VIT_KWARGS)
    batch, lr = 64, 3e-3
    steps = EPOCHS * -(-len(x_train) // batch)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    g = torch.Generator().manual_seed(7)
    common.log(f"digits_vit_torch: training {EPOCHS} epochs on {len(x_train):,} digits (4x4 patches, 7x7 grid)")
    model.train()
    for _ in range(EPOCHS):
        perm = torch.randperm(len(x_train), generator=g)
        for i in range(0, len(x_train), batch):
            idx = perm[i:i + batch]
            loss = loss_fn(model(shifted(torch, x_train[idx], g)), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    with torch.no_grad():
        acc = float((model(x_test).argmax(1).numpy() == split.y_test).mean())
    common.log(f"digits_vit_torch: held-out accuracy {acc:.4f}")
    common.require(acc >= 0.90, f"digits_vit_torch reached {acc:.3f} < 0.90")
    path = common.MODELS / "digits_vit_torch.pt"
    torch.save(model.state_dict(), path)
    spec = {**keras_side.IMAGE_INPUT, "shape": [1, 28, 28], "layout": "NCHW"}
    return [{
        "id": "digits_vit_torch", "title": "Digits ViT (PyTorch)", "seed_problem": 1, "file": common.rel(path),
        "framework": "torch", "task": "image classification", "labels": [str(i) for i in range(10)],
        "input": spec, "samples": [common.rel(p) for p in pngs], "default_sample": common.rel(pngs[3]),
        "arch": f"{common.ZOO_ARCH}:DigitViT", "arch_kwargs": dict(VIT_KWARGS), "metric": "accuracy",
        "heldout": round(acc, 4), "bar": 0.9, "heldout_size": len(split.y_test), "params": build_torch.count(model),
        "notes": "A vision transformer: 4x4 patches of the 28x28 digit (a 7x7 grid), a class token, 3 pre-norm "
                 "encoder layers of 4 heads; outputs logits. The Attention tab lays its class token's attention "
                 "(or the rollout) over the digit.",
        "extras": {"output": "logits", "sample_labels": [str(i) for i in range(10)], "patch_grid": [7, 7]},
    }]
