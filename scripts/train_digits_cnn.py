"""Train the zoo's digits models and write their weights into the package.

Reproduces ``src/quantlens/zoo/weights/{digits_cnn,digits_lstm,digits_gru,cat_cnn}.safetensors``
from scikit-learn's bundled digits (fixed split, fixed seeds, CPU, about a minute in all):

    python scripts/train_digits_cnn.py                 # every digits model
    python scripts/train_digits_cnn.py --model digits-cnn --epochs 40

It prints the float test accuracy of each model; the zoo tests assert those numbers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from quantlens import zoo

# model -> (epochs, learning rate, weight decay, pixel-shift augmentation)
RECIPES = {
    "digits-cnn": (40, 3e-3, 1e-4, True),
    "cat-cnn": (40, 3e-3, 1e-4, True),
    "digits-lstm": (60, 5e-3, 0.0, False),
    "digits-gru": (60, 5e-3, 0.0, False),
}
SEED = 0
BATCH = 64


def shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Move each (B, 1, H, W) image by up to one pixel in each direction, zero-filled."""
    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1))
    views = torch.stack(
        [padded[..., dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], 1
    )  # (B, 9, 1, H, W)
    pick = torch.randint(0, 9, (x.shape[0],), generator=gen)
    return views[torch.arange(x.shape[0]), pick]


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: zoo.ZooData) -> float:
    model.eval()
    return (model(data.inputs).argmax(1) == data.labels).float().mean().item()


def train(name: str, epochs: int | None = None) -> float:
    default_epochs, lr, weight_decay, augment = RECIPES[name]
    epochs = epochs or default_epochs
    dataset = zoo.default_dataset_for(name)
    train_set, test_set = zoo.load_dataset(dataset, "train"), zoo.load_dataset(dataset, "test")
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = zoo.load_model(name, pretrained=False)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * -(-len(train_set) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(train_set), generator=gen)
        for start in range(0, len(order), BATCH):
            idx = order[start : start + BATCH]
            x, y = train_set.inputs[idx], train_set.labels[idx]
            if augment:
                x = shift(x, gen)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    acc = accuracy(model, test_set)
    path = zoo.WEIGHTS_DIR / zoo.model_spec(name).weights
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    train_acc = accuracy(model, train_set)
    print(
        f"{name:12s} epochs {epochs:3d}  train {train_acc:.4f}  test {acc:.4f}  -> "
        f"{Path(path).name}"
    )
    return acc


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=[*RECIPES, "all"], default="all")
    parser.add_argument(
        "--epochs", type=int, default=None, help="override the recipe's epoch count"
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in RECIPES if args.model == "all" else [args.model]:
        t0 = time.perf_counter()
        train(name, args.epochs)
        print(f"{'':12s} {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
