"""``conveyor models show|lineage|reproduce|promote|rollback|release|audit``: the registry from a terminal.

Registered by :func:`register_commands` on the ``models`` sub-command parser of
``conveyor_runtime.cli``. Promotion and rollback go through the same verified switch as the
Airflow tasks (:mod:`conveyor.deploy.rollout`) and are audited the same way.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from conveyor.settings import Settings


def _config(settings: Settings, pipeline: str):
    from conveyor.config import load_pipeline_config, pipeline_path

    return load_pipeline_config(pipeline_path(pipeline, settings.pipelines_dir))


def cmd_show(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.registry import tracking

    client = tracking.configure(settings)
    mv = client.get_model_version(args.pipeline, args.version)
    aliases = ",".join(getattr(mv, "aliases", []) or []) or "-"
    print(f"{args.pipeline} v{mv.version}  aliases: {aliases}  run: {mv.run_id}")
    print(f"source: {mv.source}")
    for key in ("pinned", "metrics", "gate", "approval", "deployment", "promoted", "last_event"):
        value = mv.tags.get(f"conveyor.{key}")
        if value:
            print(f"{key:>11}: {value}")
    return 0


def cmd_lineage(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.registry import tracking

    client = tracking.configure(settings)
    mv = client.get_model_version(args.pipeline, args.version)
    facts: dict[str, Any] = {
        k.removeprefix("conveyor."): v
        for k, v in sorted(mv.tags.items())
        if k.startswith("conveyor.")
    }
    for key, value in facts.items():
        print(f"{key}: {value}")
    from conveyor.scoring.runs import find_records

    for record in find_records(settings.artifact_root, args.pipeline, version=str(mv.version)):
        print(record.lineage_line())
    return 0


def cmd_reproduce(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.registry.reproduce import reproduce

    result = reproduce(settings, args.pipeline, args.version)
    print(
        f"{result.name} v{result.version}: retrained on {result.data_git_sha[:10]} "
        f"(md5 {result.data_md5})"
    )
    for metric, registered in sorted(result.registered.items()):
        again = result.reproduced.get(metric)
        mark = (
            "identical" if again == registered else f"differs by {result.differences[metric]:.3g}"
        )
        print(f"  {metric:<10} registered {registered!r:<22} reproduced {again!r:<22} {mark}")
    print("REPRODUCED EXACTLY" if result.identical else "NOT IDENTICAL")
    return 0 if result.identical else 1


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from conveyor.registry.audit import list_events

    events = list_events(settings.artifact_root, args.pipeline)
    if args.json:
        print(json.dumps([e.to_dict() for e in events], indent=2))
        return 0
    if not events:
        print(f"No audit records for {args.pipeline}")
    for event in events:
        print(event.line())
    return 0


def _switch(args: argparse.Namespace, settings: Settings, action: str) -> int:
    from conveyor.deploy.rollout import example_rows, rollback, switch_production
    from conveyor.registry import tracking
    from conveyor.registry.audit import cli_actor
    from conveyor.registry.pin import release_pin
    from conveyor_runtime.services import demo_service_url

    cfg = _config(settings, args.pipeline)
    client = tracking.configure(settings)
    common = {
        "name": cfg.model_name,
        "reason": args.reason,
        "user": cli_actor(),
        "artifact_root": settings.artifact_root,
        # an explicit URL, else the pipeline's, else the demo's running service; none: the
        # move is recorded as not verified ("no model service configured")
        "service_url": args.service_url or cfg.deploy.service_url or demo_service_url(settings),
        "verify": args.verify or cfg.deploy.verify,
        "timeout": cfg.deploy.verify_timeout_seconds,
    }
    if action == "rollback":
        result = rollback(client, version=args.version, **common)
    else:
        result = switch_production(
            client,
            version=args.version,
            action="promote",
            rows=example_rows(cfg.model_name, args.version)[:5],
            details={"manual": True},
            **common,
        )
        # an explicit promotion is a decision about production: it ends a rollback's pin
        release_pin(
            client,
            settings.artifact_root,
            cfg.model_name,
            reason=f"promoted v{result.version}: {args.reason}",
            user=common["user"],
        )
    print(
        f"{cfg.model_name} production: v{result.previous_version or '-'} -> v{result.version} "
        f"({result.verification}); audit event {result.event_id}"
    )
    if action == "rollback":
        print(
            f"production is pinned to v{result.version}: later runs register candidates but do "
            f"not deploy them until `conveyor models release {args.pipeline} --reason ...`"
        )
    return 0


def cmd_release(args: argparse.Namespace, settings: Settings) -> int:
    """Lift a rollback's pin: the next passing run may move production again."""
    from conveyor.registry import tracking
    from conveyor.registry.audit import cli_actor
    from conveyor.registry.pin import release_pin

    cfg = _config(settings, args.pipeline)
    client = tracking.configure(settings)
    pin = release_pin(
        client, settings.artifact_root, cfg.model_name, reason=args.reason, user=cli_actor()
    )
    if pin is None:
        print(f"{cfg.model_name} production is not pinned; nothing to release")
    else:
        print(
            f"Released the pin of {cfg.model_name} production (v{pin['version']}, {pin['reason']})"
        )
    return 0


def register_commands(models: Any) -> None:
    """Add the commands to the ``models`` sub-parsers (``argparse`` subparsers action)."""
    show = models.add_parser("show", help="one version: aliases, metrics, gate, deployment")
    show.add_argument("pipeline")
    show.add_argument("version")
    show.set_defaults(func=cmd_show)

    lineage = models.add_parser("lineage", help="everything a version was made from")
    lineage.add_argument("pipeline")
    lineage.add_argument("version")
    lineage.set_defaults(func=cmd_lineage)

    again = models.add_parser(
        "reproduce", help="retrain VERSION from its recorded data, config and seed; compare"
    )
    again.add_argument("pipeline")
    again.add_argument("version")
    again.set_defaults(func=cmd_reproduce)

    audit = models.add_parser("audit", help="promotions, rollbacks and rejections, oldest first")
    audit.add_argument("pipeline")
    audit.add_argument("--json", action="store_true", help="machine-readable output")
    audit.set_defaults(func=cmd_audit)

    release = models.add_parser("release", help="lift a rollback's pin on production (audited)")
    release.add_argument("pipeline")
    release.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
    release.set_defaults(func=cmd_release)

    for action, text in (
        ("promote", "move production to VERSION and release any pin (verified; audited)"),
        ("rollback", "move production back to VERSION (default: the previous one) and pin it"),
    ):
        cmd = models.add_parser(action, help=text)
        cmd.add_argument("pipeline")
        if action == "promote":
            cmd.add_argument("version")
        else:
            cmd.add_argument("version", nargs="?", default=None)
        cmd.add_argument("--reason", required=True, help="why (recorded in the audit trail)")
        cmd.add_argument("--service-url", default=None, help="default: the pipeline's deploy URL")
        cmd.add_argument("--verify", choices=["auto", "always", "never"], default=None)
        cmd.set_defaults(func=lambda a, s, _action=action: _switch(a, s, _action))
