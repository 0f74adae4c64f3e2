"""Learning from the people who use it: `digits feedback` (the corrections people sent from
the page or the API, in the feedback store: `--db URL`, default DIGITS_DB or an SQLite file
in the user's data directory), `finetune` (a model trained on them), `promote` (into the
model store, only through the gates) and `rollback`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from digit_recognizer.cli.app import app
from digit_recognizer.cli.terminal import console, new_table
from digit_recognizer.errors import DigitsError

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="Feedback database: sqlite:///FILE or postgresql://... "
        "(default: DIGITS_DB, else an SQLite file in the user data directory).",
    ),
]

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Model store folder (default: DIGITS_MODEL_STORE, else the user data directory).",
    ),
]

feedback_app = typer.Typer(
    help="The corrections people sent: stats, export, review, delete.", no_args_is_help=True
)
app.add_typer(feedback_app, name="feedback")


@feedback_app.command()
def stats(db: DbOption = None) -> None:
    """Corrections per label and per model version, and how often the model was right."""
    from digit_recognizer.feedback import open_store

    store = open_store(db)
    summary = store.stats()
    agreement = summary["agreement"]
    console().print(
        f"{store.display_url}: {summary['corrections']} corrections from "
        f"{summary['clients']} clients; the model was right on "
        + ("-" if agreement is None else f"{agreement:.1%}")
    )
    labels = new_table("Per label", ("label", "corrections"))
    for label, count in summary["per_label"].items():
        labels.add_row(label, str(count))
    versions = new_table("Per model version", ("version", "corrections", "model right"))
    for version, tally in summary["per_version"].items():
        versions.add_row(version, str(tally["corrections"]), f"{tally['agreement']:.1%}")
    console().print(labels, versions)


@feedback_app.command()
def export(
    out: Annotated[Path, typer.Option(help="Folder for the PNG files and labels.csv.")],
    db: DbOption = None,
) -> None:
    """Every correction as a 28x28 PNG named by its label, plus labels.csv: a folder that
    `digits evaluate-images` scores."""
    from digit_recognizer.corrections import export_corrections
    from digit_recognizer.feedback import open_store

    written = export_corrections(open_store(db), out)
    console().print(f"{len(written)} corrections written to [bold]{out}[/] (+ labels.csv)")


@feedback_app.command()
def review(
    db: DbOption = None,
    top: Annotated[int, typer.Option(min=1, help="How many to show.")] = 40,
    model: Annotated[
        str | None,
        typer.Option(help="ONNX model that judges the labels (default: the shipped one)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Picture grid of them.")] = Path(
        "runs/feedback-review.png"
    ),
) -> None:
    """The corrections most likely mislabelled: the model's probability of the given label,
    lowest first (the shipped model never trains on corrections: out of sample)."""
    from digit_recognizer.corrections import review_corrections, review_grid
    from digit_recognizer.feedback import open_store

    reviewed = review_corrections(open_store(db), model, top)
    table = new_table(
        "Least likely labels first", ("id", "client", "label", "model says", "p(label)")
    )
    for row, probability, digit in reviewed:
        table.add_row(str(row.id), row.client_id, str(row.label), str(digit), f"{probability:.3f}")
    console().print(table)
    console().print(f"Picture: [bold]{review_grid(reviewed, out)}[/]")


@feedback_app.command()
def delete(
    client: Annotated[str, typer.Option("--client", help="The client id to forget.")],
    db: DbOption = None,
) -> None:
    """Delete every correction one client sent (the right to be forgotten)."""
    from digit_recognizer.feedback import open_store

    deleted = open_store(db).delete_client(client)
    console().print(f"deleted {deleted} correction(s) from client {client}")


@app.command()
def finetune(
    out: Annotated[Path, typer.Option(help="Run folder for the fine-tuned model.")],
    db: DbOption = None,
    source: Annotated[
        Path | None,
        typer.Option("--from", help="ONNX model to start from (default: the served version)."),
    ] = None,
    store: StoreOption = None,
    epochs: Annotated[int, typer.Option(min=1)] = 6,
    per_client: Annotated[
        int, typer.Option(min=1, help="Most corrections one client contributes.")
    ] = 100,
    seed: Annotated[int, typer.Option()] = 0,
) -> None:
    """Fine-tune the digit model on the corrections, mixed with MNIST replay; a part of the
    corrections is held out for `digits promote` to score."""
    from digit_recognizer.cli.terminal import quiet_tensorflow

    quiet_tensorflow()
    import keras
    from rich.progress import Progress

    from digit_recognizer.feedback import open_store
    from digit_recognizer.finetune import FinetuneConfig
    from digit_recognizer.finetune import finetune as run_finetune
    from digit_recognizer.model_store import open_model_store

    config = FinetuneConfig(epochs=epochs, per_client=per_client, seed=seed)
    source = source or open_model_store(store).current_model()
    with Progress(console=console()) as progress:
        task = progress.add_task("fine-tuning", total=epochs)

        class Advance(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                progress.update(task, advance=1, description=f"loss {logs['loss']:.4f}")

        record = run_finetune(config, open_store(db), out, source, progress=Advance())
    data = record["data"]
    console().print(
        f"Fine-tuned {source} on {data['corrections']} corrections "
        f"(+ {data['mnist_replay']} MNIST replay), {len(record['held_out_ids'])} held out; "
        f"run in [bold]{out}[/]. Next: digits promote {out}"
    )


@app.command()
def promote(
    run: Annotated[Path, typer.Argument(help="A `digits finetune` run folder.")],
    db: DbOption = None,
    store: StoreOption = None,
    handwriting: Annotated[
        Path | None,
        typer.Option(help="Labelled handwriting folder for its gate (default: data/handwriting)."),
    ] = None,
) -> None:
    """Put a fine-tuned model into the model store and serve it, only if every gate holds
    against the served version; the gate table is printed either way."""
    from digit_recognizer.feedback import open_store
    from digit_recognizer.model_store import open_model_store
    from digit_recognizer.promote import promote as run_promote

    models = open_model_store(store)
    handwriting = handwriting or Path("data/handwriting")
    if not handwriting.is_dir():
        console(stderr=True).print(f"note: no {handwriting} here: its gate is left out")
        handwriting = None
    with console().status("scoring the candidate and the served version"):
        gates, version = run_promote(run, models, open_store(db), handwriting)
    table = new_table(
        f"Promotion gates: {run} against version {models.history()[-2 if version else -1]}",
        ("gate", "served", "candidate", "right only by served / candidate (p)", "rule",
         "holds"),
    )  # fmt: skip
    for gate in gates:
        score = lambda v: "-" if v is None else f"{v:.2%}"  # noqa: E731
        differ = (
            "-"
            if gate.p_value is None
            else (f"{gate.only_current} / {gate.only_candidate} ({gate.p_value:.2g})")
        )
        table.add_row(gate.name, score(gate.current), score(gate.candidate), differ, gate.rule,
                      "yes" if gate.passed else "[red]NO[/]")  # fmt: skip
    console().print(table)
    console().print("p: McNemar's exact test, the chance of a split that uneven between equals.")
    if version is None:
        failed = ", ".join(g.name for g in gates if not g.passed)
        raise DigitsError(f"not promoted: {failed} did not hold")
    console().print(f"Promoted: version {version} now serves (digits rollback to undo)")


@app.command()
def rollback(store: StoreOption = None) -> None:
    """Serve the previous model version again (a running `digits serve` switches to it)."""
    from digit_recognizer.model_store import open_model_store

    version = open_model_store(store).rollback()
    console().print(f"Version {version} serves again")
