"""`routerllm report`: a running graph's carbon report as JSON and charts (training/report.py)."""

from __future__ import annotations

import argparse


def add_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="a running graph's carbon report: report.json and charts (training/report.py)"
    )
    parser.add_argument("--url", required=True, help="the graph's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--out", required=True, help="directory to write report.json and the PNG charts into")
    parser.add_argument("--window-s", type=float, default=None, help="report window (default: the budget window)")
    parser.add_argument("--page-size", type=int, default=500, help="outcomes fetched per page")
    parser.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from training.report import write_report

    for path in write_report(args.url, args.out, args.window_s, args.page_size):
        print(path)
    return 0
