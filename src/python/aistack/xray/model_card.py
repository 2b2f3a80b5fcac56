"""Each version's MODEL_CARD.md: written from its training record, test figures recorded later.

`aistack train xray` writes the card into the new version folder, so a version never lacks
one or borrows another's figures. The test section stays "not yet evaluated" until
`aistack evaluate xray --record` replaces it (between the evaluation markers) with measured
figures; nothing else in the card is touched, so hand-written notes survive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

CARD_FILE = "MODEL_CARD.md"
EVALUATION_START = "<!-- aistack:evaluation:start -->"
EVALUATION_END = "<!-- aistack:evaluation:end -->"

DISCLAIMER = (
    "> Research demonstration. Not a medical device; not for diagnosis or any clinical decision."
)


def now_utc() -> str:
    """A timestamp for cards and ``model_info.json`` (UTC, to the second)."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def confusion_table(classes: list[str], matrix: list[list[int]]) -> list[str]:
    return table(["", *classes], [[c, *row] for c, row in zip(classes, matrix, strict=True)])


def evaluate_command(info: dict, model_dir: str) -> str:
    """How to evaluate this version and record the result in its card."""
    data = Path(info.get("training", {}).get("data", "TRAIN_FOLDER"))
    test_data = data.with_name("test") if data.name == "train" else Path("TEST_FOLDER")
    return (
        f"aistack evaluate xray --data {test_data} --model-dir {model_dir} "
        f"--model-version {info['version']} --record"
    )


def not_evaluated(info: dict, model_dir: str) -> list[str]:
    return [
        EVALUATION_START,
        "## Test",
        "",
        "Not yet evaluated — run",
        "",
        "```sh",
        evaluate_command(info, model_dir),
        "```",
        EVALUATION_END,
    ]


def render_training_card(info: dict, model_dir: str) -> str:
    """The card of a freshly trained version, from its ``model_info.json``."""
    training = info["training"]
    config = training["config"]
    classes = info["classes"]
    confusion = training["out_of_fold_confusion"]
    correct = sum(confusion[i][i] for i in range(len(confusion)))
    per_class = ", ".join(f"{c} {sum(row)}" for c, row in zip(classes, confusion, strict=True))
    limit = config.get("limit_per_class")
    size = info["image_size"]
    lines = [
        f"# Model card: {info['name']} (chest X-ray classifier), version {info['version']}",
        "",
        DISCLAIMER,
        "",
        f"Written by `aistack train xray` on {training.get('trained_at', 'an unknown date')}. "
        "A new version is not served until chosen: `aistack models list` shows the versions, "
        "`aistack models label stable N` chooses one.",
        "",
        "## What it does",
        "",
        f"Classifies a chest radiograph ({size}x{size} grayscale input) into "
        + ", ".join(f"`{c}`" for c in classes)
        + ", in this output order, with a Grad-CAM heatmap of the top class from the same "
        f"forward pass. {info.get('members', config['folds'])} small CNNs trained from scratch, "
        "one per cross-validation fold, averaged into one model; no pretrained weights.",
        "",
        "## Data",
        "",
        f"- Training: `{training['data']}`, {training['images']} images ({per_class})"
        + (f", limited to {limit} per class" if limit else "")
        + ".",
        "",
        "## Training",
        "",
        "```sh",
        training.get("command", "aistack train xray"),
        "```",
        "",
        *table(["setting", "value"], [[k, f"`{v}`"] for k, v in config.items()]),
        "",
        f"Stratified {config['folds']}-fold cross-validation on the training folder only; each "
        "member keeps its epoch of lowest validation loss. "
        f"Trained in {training['seconds']:.0f} s.",
        "",
        "## Validation (training folder only)",
        "",
        *table(
            ["fold", "best epoch", "validation accuracy", "validation images"],
            [
                [f["fold"] + 1, f["best_epoch"], f"{f['val_accuracy']:.3f}", f["val_images"]]
                for f in training["folds"]
            ],
        ),
        "",
        f"Out-of-fold accuracy {training['out_of_fold_accuracy']:.3f} "
        f"({correct}/{training['images']}); confusion (rows truth, columns predicted):",
        "",
        *confusion_table(classes, confusion),
        "",
        *not_evaluated(info, model_dir),
        "",
        "## SavedModel signatures",
        "",
        *table(
            ["signature", "input", "outputs"],
            [
                ["`serving_default`", "`image_bytes`: string[N]", "`probabilities`"],
                ["`gradcam`", "`image_bytes`: string[N]", "`probabilities`, `heatmap`"],
                ["`predict_pixels`", f"`pixels`: uint8[N, {size}, {size}, 1]", "`probabilities`"],
                [
                    "`gradcam_pixels`",
                    f"`pixels`: uint8[N, {size}, {size}, 1]",
                    "`probabilities`, `heatmap`",
                ],
            ],
        ),
        "",
        "## Intended use and limits",
        "",
        "- Intended use: demonstrating and testing an AI serving stack.",
        "- Not for diagnosis, triage or any clinical use. Not validated on any clinical "
        "population.",
        "- The training data may be confounded (image source, patient age): check what the "
        "classes differ by before reading anything into the accuracy.",
    ]
    return "\n".join(lines) + "\n"


def write_training_card(version_dir: Path, info: dict, model_dir: str) -> Path:
    path = version_dir / CARD_FILE
    path.write_text(render_training_card(info, model_dir))
    return path


def render_evaluation(result: dict, command: str, recorded_at: str) -> list[str]:
    """The card's test section from an ``aistack.xray.evaluate.evaluate`` result."""
    auc = result["roc_auc_ovr"]
    rows = [
        [
            name,
            f"{row['precision']:.3f}",
            f"{row['recall']:.3f}",
            f"{row['f1-score']:.3f}",
            int(row["support"]),
        ]
        for name, row in result["per_class"].items()
    ]
    return [
        EVALUATION_START,
        "## Test",
        "",
        f"Recorded by `aistack evaluate xray --record` on {recorded_at}, on `{result['data']}`:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"**{result['correct']}/{result['images']} correct "
        f"(accuracy {result['accuracy']:.3f})**, ROC AUC one-vs-rest "
        + (f"{auc:.3f}." if auc is not None else "n/a (a class is missing)."),
        "",
        *table(["class", "precision", "recall", "F1", "support"], rows),
        "",
        "Confusion matrix (rows truth, columns predicted):",
        "",
        *confusion_table(result["classes"], result["confusion_matrix"]),
        EVALUATION_END,
    ]


def replace_evaluation(card: str, section: list[str]) -> str:
    """``card`` with its evaluation section replaced, or the section appended if it has none."""
    start, end = card.find(EVALUATION_START), card.find(EVALUATION_END)
    if start < 0 or end < start:
        return card.rstrip("\n") + "\n\n" + "\n".join(section) + "\n"
    return card[:start] + "\n".join(section) + card[end + len(EVALUATION_END) :]


def record_evaluation(version_dir: Path, result: dict, command: str) -> Path:
    """Write the test figures into the version's card (a card is started if it has none)."""
    path = version_dir / CARD_FILE
    card = (
        path.read_text()
        if path.is_file()
        else f"# Model card: version {version_dir.name}\n\n{DISCLAIMER}\n"
    )
    path.write_text(replace_evaluation(card, render_evaluation(result, command, now_utc())))
    return path
