"""Run-folder tools: stage timings, the filled results report, its plots and ablation tables."""
