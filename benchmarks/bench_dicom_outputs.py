"""What `spineai run --dicom` adds to a run of the real CT series (budget: at most 2 s).

Each run is a cold `run_task` in its own process (``machine.python_json``): cervical-ct on
``../shared/data/ct_thoracolumbar/dicom_series`` with ``dicom=True``; the report's
``timings.dicom_source_s`` (finding and checking the source instances, before the run) and
``timings.dicom_s`` (writing SR and secondary captures — no SEG: nothing cervical is found on
this abdominal CT — imports of highdicom included) are what --dicom adds. The same runs on a
generated cervical phantom series (vertebrae found: SEG too) for comparison.

Writes benchmarks/results/dicom_outputs.{json,md} with the machine and its load.
"""

import argparse
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from machine import describe_machine, median, python_json  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO.parent / "shared" / "data" / "ct_thoracolumbar" / "dicom_series"

RUN = """
import json, sys, time
import torch
torch.set_num_threads(1)
t0 = time.perf_counter()
from SpineAILib.tasks import run_task
report = run_task("cervical-ct", sys.argv[1], sys.argv[2], device="cpu", force=True, dicom=sys.argv[3] == "1")
print(json.dumps({"run_s": time.perf_counter() - t0, "timings": report["timings"], "files": report.get("dicom", {}).get("files", []),
                  "peak_rss_mib": PEAK}))
"""

PHANTOM = """
import json, sys
from SpineAITraining.cervical.phantom import make_case
from SpineAILib.samples.dicom_writer import write_dicom_series
case = make_case(90011, levels=("C2", "C3", "C4", "C5", "C6"), spacing=(1.0, 1.0, 2.0), fracture_rate=0.0)
write_dicom_series(case.ct, sys.argv[1], modality="CT", series_description="Phantom cervical CT")
print(json.dumps({"shape": list(case.ct.voxels.shape)}))
"""


def measure(source, out, repeats):
    runs = [python_json(RUN, source, out, "1") for _ in range(repeats)]
    added = [r["timings"]["dicom_source_s"] + r["timings"]["dicom_s"] for r in runs]
    return {
        "added_s_median": round(median(added), 3),
        "added_s_all": [round(v, 3) for v in added],
        "dicom_source_s": [r["timings"]["dicom_source_s"] for r in runs],
        "dicom_s": [r["timings"]["dicom_s"] for r in runs],
        "run_s": [round(r["run_s"], 2) for r in runs],
        "files": runs[-1]["files"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results = {"real_ct_series": measure(REAL_CT, tmp / "real", args.repeats)}
        python_json(PHANTOM, tmp / "phantom")
        results["cervical_phantom_series"] = measure(tmp / "phantom", tmp / "phantom_out", args.repeats)
    load_after = os.getloadavg()
    document = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "load_average_before_after": [round(v, 2) for v in load_before] + [round(v, 2) for v in load_after],
        "budget_s": 2.0,
        "results": results,
    }
    args.out.mkdir(exist_ok=True)
    (args.out / "dicom_outputs.json").write_text(json.dumps(document, indent=2) + "\n")
    m, real, phantom = document["machine"], results["real_ct_series"], results["cervical_phantom_series"]
    lines = [
        "# `spineai run --dicom`: time added", "",
        f"{document['date']}; {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, CPU, 1 torch thread; median of "
        f"{args.repeats} cold runs each; load average (1, 5, 15 min) before {document['load_average_before_after'][:3]}, "
        f"after {document['load_average_before_after'][3:]}.", "",
        "| input | --dicom adds (source check + writing) | of which writing | whole run | files |",
        "|---|---|---|---|---|",
        f"| real CT series, 20 × 512 × 512 JPEG 2000 (nothing cervical: SR + 2 captures) | {real['added_s_median']} s "
        f"({', '.join(map(str, real['added_s_all']))}) | {median(real['dicom_s'])} s | {median(real['run_s'])} s | {len(real['files'])} |",
        f"| generated cervical phantom series (vertebrae found: SEG + SR + 2 captures) | {phantom['added_s_median']} s "
        f"({', '.join(map(str, phantom['added_s_all']))}) | {median(phantom['dicom_s'])} s | {median(phantom['run_s'])} s | {len(phantom['files'])} |",
        "", "Budget: at most 2 s added to a run of the real CT series.",
    ]  # fmt: skip
    (args.out / "dicom_outputs.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
