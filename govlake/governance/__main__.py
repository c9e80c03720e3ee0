"""``python -m govlake.governance``: data requests, grants, the endpoint's access file and share views.

    check                                   validate the catalog, the policy and the principals
    request --user U --resource layer.table --purpose P --use-case C --from D --to D
    review REQUEST_ID --reviewer S          take a request into review
    approve REQUEST_ID --reviewer S [--reason R]
    refuse REQUEST_ID --reviewer S --reason R
    revoke GRANT_ID --by S --reason R
    list requests|grants|events             the governance tables, one line per row
    overdue [--as-of ISO]                   requests past the review (2) or reply (5 working days) service level
    access                                  rewrite the SQL endpoint's access file from the current grants
    publish                                 create the share views in the persistent catalog (Spark), then access
    audit [--user U]                        the endpoint's audit of statements
    ranger-export --out F                   the policy, users' row filters and active grants as Ranger policies

Reviewers and revokers are data stewards of ``schemas/governance/principals.yaml``. Every change rewrites the access
file, so it holds at the user's next statement.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime

from govlake.core import fsio
from govlake.core.config import Settings
from govlake.governance import access, requests
from govlake.governance.policy import PolicyError


def _context(gov: access.Governance) -> requests.Context:
    return requests.Context(gov.principals, {t: (r.sharing_type, r.provider or r.provider_code)
                                             for t, r in gov.resources.items()})


def _steward(gov: access.Governance, name: str) -> str:
    principal = gov.principals.get(name)
    if principal is None or principal.role != "steward":
        raise requests.RequestError(f"{name!r} is not a data steward: only stewards review and revoke")
    return name


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit status (1 on a refused step)."""
    parser = argparse.ArgumentParser(prog="python -m govlake.governance", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check")
    p = sub.add_parser("request")
    for opt in ("--user", "--resource", "--purpose", "--use-case"):
        p.add_argument(opt, required=True)
    p.add_argument("--from", dest="start", type=date.fromisoformat, required=True)
    p.add_argument("--to", dest="end", type=date.fromisoformat, required=True)
    p = sub.add_parser("review")
    p.add_argument("request_id")
    p.add_argument("--reviewer", required=True)
    for name in ("approve", "refuse"):
        p = sub.add_parser(name)
        p.add_argument("request_id")
        p.add_argument("--reviewer", required=True)
        p.add_argument("--reason", required=name == "refuse", default="")
    p = sub.add_parser("revoke")
    p.add_argument("grant_id")
    p.add_argument("--by", required=True)
    p.add_argument("--reason", required=True)
    p = sub.add_parser("list")
    p.add_argument("table", choices=("requests", "grants", "events"))
    p = sub.add_parser("overdue")
    p.add_argument("--as-of", type=datetime.fromisoformat, default=None)
    sub.add_parser("access")
    sub.add_parser("publish")
    p = sub.add_parser("audit")
    p.add_argument("--user", default=None)
    p = sub.add_parser("ranger-export")
    p.add_argument("--out", required=True)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = Settings.from_env()
    try:
        gov = access.load_governance()
        if args.command == "check":
            print(f"governance: {len(gov.resources)} resources, {len(gov.principals)} users, "
                  f"{len(gov.policy.access) + len(gov.policy.masks) + len(gov.policy.row_filters)} policy items: ok")
            return 0
        if args.command == "request":
            row = requests.submit(settings, _context(gov), args.user, args.resource, args.purpose, args.use_case,
                                  args.start, args.end)
            print(f"{row['request_id']}: {args.resource} requested by {args.user} (submitted)")
        elif args.command == "review":
            row = requests.start_review(settings, args.request_id, _steward(gov, args.reviewer))
            print(f"{row['request_id']}: under review by {args.reviewer}")
        elif args.command in ("approve", "refuse"):
            row = requests.decide(settings, args.request_id, _steward(gov, args.reviewer),
                                  args.command == "approve", args.reason)
            print(f"{row['request_id']}: {row['status']}" + (f", grant {row['grant_id']}" if row["grant_id"] else ""))
        elif args.command == "revoke":
            grant = requests.revoke(settings, args.grant_id, _steward(gov, args.by), args.reason)
            print(f"{grant['grant_id']}: revoked ({grant['user']} on {grant['resource']})")
        elif args.command == "list":
            table = "grant_events" if args.table == "events" else args.table
            for row in requests.read_table(settings, table):
                print("\t".join("" if v is None else str(v) for v in row.values()))
            return 0
        elif args.command == "overdue":
            as_of = args.as_of.astimezone(UTC) if args.as_of else None
            for breach in requests.overdue(settings, as_of):
                print(f"{breach['request_id']}\t{breach['resource']}\t{breach['step']} overdue by "
                      f"{breach['late_by_hours']} h (due {breach['due']:%Y-%m-%d %H:%M} UTC)")
            return 0
        elif args.command == "publish":
            from govlake.core.spark import get_spark

            spark = get_spark(settings, app_name="govlake-governance-publish")
            made = access.publish_share_views(spark, settings, gov)
            print(f"share views: {len(made)} (re)created")
        elif args.command == "ranger-export":
            from pathlib import Path

            from govlake.governance.policy import ranger_export

            doc = ranger_export(gov.policy, gov.principals, requests.grants(settings), datetime.now(UTC))
            fsio.atomic_write_text(Path(args.out), json.dumps(doc, ensure_ascii=False, indent=2) + "\n")
            print(f"ranger policies: {len(doc['policies'])} in {args.out}")
            return 0
        elif args.command == "audit":
            for rec in access.read_audit(settings):
                if args.user in (None, rec["user"]):
                    print(f"{rec['at']}\t{rec['user']}\t{rec['role']}\t{rec['decision']}\t"
                          f"{','.join(rec['resources'])}\t{' '.join((rec['statement'] or '').split())}"
                          + (f"\t{rec['reason']}" if rec["reason"] else ""))
            return 0
        print(f"access file: {access.write_access_file(settings, gov)}")
    except (requests.RequestError, PolicyError) as exc:
        print(f"governance: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
