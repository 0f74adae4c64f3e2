"""results.md: the benchmark's figures as markdown tables, read from results.json's dict."""

from __future__ import annotations


def _seconds(value: float | None) -> str:
    return "not reached" if value is None else f"{value:.1f} s"


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results"
        + (" (quick: reduced sizes, not comparable)" if results["quick"] else ""),
        "",
        f"{m['cpu']} ({', '.join(m['vector_extensions'] or ['no AVX2'])}), "
        f"{m['cores']} cores; Python {m['versions']['python']}, "
        f"tensorflow-cpu {m['versions']['tensorflow-cpu']}, keras {m['versions']['keras']}, "
        f"onnxruntime {m['versions']['onnxruntime']}; {m['date']}.",
        "",
        "## Training",
        "",
        "| model | training images/s |",
        "|---|---:|",
        *[f"| {k} | {v:,.0f} |" for k, v in results["training_images_per_s"].items()],
        "",
        "| recipe | model | to 99.0 % test | to 99.5 % test | after 1 epoch | epochs run "
        "| last epoch: test / validation |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for run in results["time_to_accuracy"].values():
        to, last = run["seconds_to"], run["curve"][-1]
        lines.append(
            f"| {run['recipe']} | {run['model']} | {_seconds(to['0.990'])} | "
            f"{_seconds(to['0.995'])} | {run['accuracy_after_1_epoch']:.2%} | {len(run['curve'])} "
            f"| {last['accuracy']:.2%} / {last['val_accuracy']:.2%} |"
        )
    runs = results["time_to_accuracy"]
    baseline_99, fast_99 = (runs[r]["seconds_to"]["0.990"] for r in ("baseline", "fast"))
    if baseline_99 and fast_99:
        lines += [
            "",
            f"The fast recipe reaches 99.0 % in {fast_99 / baseline_99:.2f} of the baseline "
            "recipe's time (training seconds, test accuracy checked after each epoch).",
        ]
    inf = results["inference"]
    cold, ready = results["cold_start"]["predict"], results["cold_start"]["serve_ready_s"]
    v = m["versions"]
    lines += [
        "",
        "## Inference (shipped model)",
        "",
        "| engine | single image p50 | p99 | batch of 1,024: images/s | peak RSS |",
        "|---|---:|---:|---:|---:|",
        *[
            f"| {name} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | "
            f"{r['batch_images_per_s']:,.0f} | {r['peak_rss_mb']:.0f} MB |"
            for name, r in ((k, inf[k]) for k in ("keras", "onnxruntime"))
        ],
        "",
        f"ONNX Runtime is {inf['onnx_speedup_p50']:.0f}x faster than Keras `model(x)` per image "
        f"(p50, {inf['keras']['calls']} calls each). Keras side: `{inf['keras_model']}`.",
        "",
        "## Reading the page's drawings (server side, decoding included)",
        "",
        "| request | canvas | p50 | p99 |",
        "|---|---|---:|---:|",
        *[
            f"| {request} | {canvas} | {results['reading'][key]['p50_ms']:.2f} ms | "
            f"{results['reading'][key]['p99_ms']:.2f} ms |"
            for key, request, canvas in (
                ("digit_canvas", "`/api/predict`", "280x280, a 7"),
                ("number_canvas", "`/api/read`", "840x280, 4710 (1 and 0 touching)"),
            )
        ],
        "",
        "## Cold start and server",
        "",
        f"- `digits predict one.png` in a fresh process: {cold['median_s']:.2f} s "
        f"(median of {cold['runs']})",
        f"- `digits serve` until `/api/health` answers: {ready:.2f} s",
        "",
        "`POST /api/predict` with a 280x280 canvas PNG (RGBA, sent as the page sends it: a "
        f"JSON data URL), `digits serve --workers {results['server']['workers']}` (uvicorn "
        f"{v['uvicorn']}, httptools {v['httptools']}, asyncio), keep-alive "
        "clients on 127.0.0.1 (same machine) sharing one count of requests:",
        "",
        "| concurrency | requests | errors | requests/s | p50 | p99 |",
        "|---:|---:|---:|---:|---:|---:|",
        *[
            f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['requests_per_s']:.0f} | "
            f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |"
            for r in results["server"]["levels"]
        ],
        "",
        f"Server healthy afterwards: {results['server']['healthy_after']}.",
        "",
    ]
    if "fuzz" in results:
        fuzzed = results["fuzz"]
        routes = ", ".join(f"{route} {n}" for route, n in fuzzed["per_route"].items())
        lines += [
            "## The API fuzzed (schemathesis, in-process)",
            "",
            f"{fuzzed['cases']:,} generated requests in {fuzzed['seconds']:.0f} s, "
            f"**{fuzzed['server_errors']} server errors**. Per route: {routes}. "
            f"Statuses: {', '.join(f'{k}: {v}' for k, v in fuzzed['statuses'].items())}.",
            "",
        ]
    return "\n".join(lines)
