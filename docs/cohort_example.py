"""Join a her2fish cohort table to outcome data and plot GCN by group (an example for research).

1. Score each case's fields (one sub-folder per case, or a --samples sheet):
       her2fish score cohort_images/ --out cohort_run --samples sheet.csv
2. Make one tidy table of the cases (several runs can be joined):
       her2fish cohort cohort_run --out cohort.csv
3. Join it to your outcome table by case id and analyse it, as below.

No outcome data ships with her2fish: this script makes up a toy outcome table so that it runs.
Usage: python docs/cohort_example.py COHORT.csv [OUT.png]
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd


def main(cohort_csv: str, out_png: str = "gcn_by_group.png") -> None:
    cohort = pd.read_csv(cohort_csv, dtype={"case_id": str})
    rng = np.random.default_rng(0)
    # Made-up outcomes, for illustration only: replace with your own table.
    outcomes = pd.DataFrame({
        "case_id": cohort["case_id"],
        "pfs_months": rng.gamma(2.0, 3.0, len(cohort)).round(1),
        "response": rng.choice(["CR/PR", "SD", "PD"], len(cohort)),
    })
    data = cohort.merge(outcomes, on="case_id", how="inner", validate="one_to_one")
    data["gcn_group"] = np.where(data["gcn"] >= 20, "GCN >= 20", "GCN < 20")
    print(data[["case_id", "gcn", "ratio", "pct_cells_ratio_ge_2", "gcn_group", "pfs_months"]])
    print(data.groupby("gcn_group")["pfs_months"].describe())

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    groups = sorted(data["asco_cap_2018_group"].dropna().unique())
    values = [data.loc[data["asco_cap_2018_group"] == g, "gcn"] for g in groups]
    ax.boxplot(values)
    ax.set_xticks(range(1, len(groups) + 1), [f"Group {int(g)}" for g in groups])
    ax.axhline(20, color="red", linestyle="--", label="GCN 20 (S1613)")
    ax.set_ylabel("mean HER2 copies per cell (GCN)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=120)
    print(f"wrote {out_png}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(*sys.argv[1:3])
