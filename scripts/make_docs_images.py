"""Make the pictures in docs/ that the README shows, from real runs (so they stay current).

    python scripts/make_docs_images.py            # writes docs/*.png

Needs Graphviz's `dot` and Chromium (scripts/install-system-deps.sh), and playwright (the test
extras). Each picture is what a user gets from the same calls: `cr.draw`, the step-through page
of `cr.inspect.write_page` (screenshots in headless Chromium) and the gradient-flow plots of
`chainrule train --report`.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import chainrule as cr
from chainrule.inspect.examples import seed_003, seed_004
from chainrule.training import build_model

DOCS = Path(__file__).resolve().parents[1] / "docs"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run"]


def trained_digits_model(epochs: int = 3):
    """The default network of `chainrule train`, trained briefly, and its gradient flow."""
    cr.manual_seed(0)
    train, _, test = cr.data.digits_splits(seed=0)
    model = build_model(64, [256, 128], 10, "relu", train.X)
    optimizer = cr.optim.Adam(model.parameters(), lr=2e-3)
    loader = cr.data.DataLoader(cr.data.TensorDataset(train.X, train.y), batch_size=32,
                                shuffle=True, seed=0)
    flow = cr.inspect.GradientFlow(model)
    for _ in range(epochs):
        for xb, yb in loader:
            optimizer.zero_grad()
            cr.nn.functional.cross_entropy(model(cr.tensor(xb)), yb).backward()
            optimizer.step()
            flow.step()
    return model, flow, test


def one_sample_loss(model, test):
    sample, label = cr.tensor(test.X[:1]), test.y[:1]
    with cr.inspect.record():
        loss = cr.nn.functional.cross_entropy(model(sample), label)
    return loss


def screenshots(pages: dict) -> None:
    """``{png name: (html path, actions)}``: open each page, act, screenshot the viewport."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        for name, (html, actions) in pages.items():
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(html.as_uri())
            for kind, what in actions:
                if kind == "key":
                    page.keyboard.press(what)
                else:
                    page.click(what)
            page.wait_for_timeout(300)
            page.screenshot(path=str(DOCS / name))
            page.close()
        browser.close()


def main() -> int:
    if shutil.which("dot") is None:
        print("Graphviz's dot is needed: bash scripts/install-system-deps.sh", file=sys.stderr)
        return 1
    DOCS.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp())

    loss3, names3 = seed_003()
    cr.draw(loss3, names=names3, title="seed 003: every wire carries its value and gradient"
            ).save(DOCS / "seed003-graph.png")
    loss4, names4 = seed_004()
    cr.draw(loss4, names=names4, title="seed 004: one neuron in a chain").save(
        DOCS / "seed004-graph.png")

    model, flow, test = trained_digits_model()
    loss = one_sample_loss(model, test)
    cr.draw(loss, collapse=model, title="the digits MLP, one sample, one box per layer").save(
        DOCS / "digits-graph.png")
    for png in flow.plot(work):
        shutil.copy(png, DOCS / png.name)

    page3, page_digits = work / "seed003.html", work / "digits.html"
    cr.inspect.write_page(loss3, page3, names=names3, lr=0.5)
    cr.inspect.write_page(one_sample_loss(model, test), page_digits, collapse=model)
    w1 = cr.inspect.trace(loss3, names=names3)["w1"].id
    screenshots({
        "page-step.png": (page3, [("key", "ArrowRight")] * 4),
        "page-chain.png": (page3, [("key", "ArrowRight")] * 4
                           + [("click", f'#graph [id="{w1}"]')]),
        "page-update.png": (page3, [("key", "End")]),
        "page-digits.png": (page_digits, [("key", "ArrowRight")] * 2),
    })
    for png in sorted(DOCS.glob("*.png")):
        print(f"wrote {png.relative_to(DOCS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
