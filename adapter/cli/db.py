"""db upgrade | current | history: the state database's schema revision (Alembic)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

from adapter.cli.common import print_field, settings_of
from adapter.i18n import _

if TYPE_CHECKING:
    from adapter.config import Settings

EXIT_OK, EXIT_BEHIND = 0, 1


def register(sub) -> None:
    p = sub.add_parser("db", help=_("the state database's schema: upgrade it, show its "
                                    "revision"))
    ps = p.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    u = ps.add_parser("upgrade", help=_("bring the state database to this release's revision "
                                        "(creates it when empty)"))
    u.set_defaults(handler=cmd_upgrade)
    c = ps.add_parser("current", help=_("the revision the state database is at"))
    c.add_argument("--check", action="store_true",
                   help=_("exit 1 unless it is at this release's revision"))
    c.set_defaults(handler=cmd_current)
    h = ps.add_parser("history", help=_("the revisions this release knows, oldest first"))
    h.set_defaults(handler=cmd_history)


def _state_db(args) -> tuple[str, str]:
    """(URL, the URL as shown: password hidden)."""
    s = settings_of(args)
    url = s.url(s.adapter.state_db)
    return url, make_url(url).render_as_string(hide_password=True)


def _missing_sqlite_file(url: str) -> bool:
    u = make_url(url)
    db = u.database or ""
    return (u.get_backend_name() == "sqlite" and db not in ("", ":memory:")
            and not Path(db).exists())


def upgrade_state_db(settings: Settings) -> None:
    """Bring the state database to head and say what was done (`init`, `db upgrade`): one
    line, then whatever the revisions had to tell the operator."""
    from adapter.dbutil import make_engine
    from adapter.store.schema_version import upgrade_to_head

    url = settings.url(settings.adapter.state_db)
    engine = make_engine(url)
    try:
        result = upgrade_to_head(engine)
    finally:
        engine.dispose()
    print(_("state database {url}: {outcome}").format(
        url=make_url(url).render_as_string(hide_password=True), outcome=result.describe()))
    for note in result.notes:
        print(f"  {note}")


def cmd_upgrade(args) -> int:
    upgrade_state_db(settings_of(args))
    return EXIT_OK


def cmd_current(args) -> int:
    from adapter.dbutil import make_engine
    from adapter.store.schema_version import (
        SchemaVersionError,
        current_revision,
        head_revision,
        require_current,
    )

    url, shown = _state_db(args)
    head = head_revision()
    print_field(_("state database"), shown)
    if _missing_sqlite_file(url):  # do not create an empty file just to look
        print_field(_("revision"), _("none (the file does not exist yet)"))
        print_field(_("needed"), _("{head}: run `{command}`").format(
            head=head, command="thads-adapter init"))
        return EXIT_BEHIND if args.check else EXIT_OK
    engine = make_engine(url)
    try:
        current = current_revision(engine)
        print_field(_("revision"), _("{revision} (this release's)").format(revision=current)
                    if current == head else current or _("none"))
        try:
            require_current(engine)
        except SchemaVersionError as exc:
            print_field(_("needed"), str(exc))
            return EXIT_BEHIND if args.check else EXIT_OK
    finally:
        engine.dispose()
    return EXIT_OK


def cmd_history(args) -> int:
    from adapter.store.schema_version import head_revision, history

    head = head_revision()
    for rev, title in history():
        print(f"{rev}{' ' + _('(head)') if rev == head else ''}  {title}")
    return EXIT_OK
