"""The gate out of a rewrite phase: etcd shows that no stored Secret still needs the key about to leave the files.

A rewrite phase (``rotation_state.REWRITES``) ends only when:

- the operator confirmed it (``finish-encryption-key-rotation``) and a census
  of etcd (``etcd_census``) finds every object of the encrypted resources
  stored under the phase's write key; the census is taken when the operator
  confirms and again whenever the leader is about to leave the phase, so a
  Secret written under the old key after the confirmation is still caught
  (the confirmation is then withdrawn and the status names the Secrets);
- or the operator confirmed with ``force=true``: their word, as before this
  check existed, for when etcd cannot be read from the leader.  Never taken
  silently: etcd being unreachable refuses a plain confirmation and says why;
- or, for a rotation started with ``rewrite=auto``, the leader itself replaced
  the Secrets through the Kubernetes API (``kube_rewrite``) and a census
  found them all under the write key;
- or the operator ran ``finish-encryption-key-rotation`` on another unit,
  whose census found every Secret under the write key (``verified_elsewhere``),
  and the leader's own census agrees or cannot be taken: a unit added during
  the rotation is held without a file, so its kube-apiserver was never
  configured and it has no etcd to read; if it becomes leader, that is the
  way out without ``force=true``.

The outcome of this hook's census or rewrite is kept for the leader's status
(``status_line``).  Nothing here carries a value: names and counts only.
"""

import time
from typing import Any, Dict, Optional, Sequence, Tuple

from charmhelpers.core import hookenv

from charms.layer.vault_kv.secure_storage import (
    apiserver_args_path,
    config_path,
    encryption_config,
    etcd_census,
    kube_rewrite,
    rolling,
    rotation_state,
)

#: how long one leader hook spends replacing Secrets before it hands on (the next hook goes on)
REWRITE_SECONDS = 60
AUTO = "auto"

# this hook's findings (each hook and action is a process of its own)
_found: Dict[Tuple[str, ...], Any] = {}


def _log(message: str, level: str = hookenv.INFO) -> None:
    hookenv.log("vault-kv: " + message, level=level)


def write_key_name(state: Dict[str, Any]) -> str:
    """The name of the key the phase's files write with: every stored object should be under it."""
    keys, _ = rotation_state.phase_plan(state)
    return keys[0][0]


def census(state: Dict[str, Any], fresh: bool = False) -> etcd_census.Census:
    """This hook's census for the phase (taken once a hook unless ``fresh``); raises EtcdUnavailable."""
    key = (state["id"], state["phase"])
    found = _found.get(key)
    if fresh or found is None:
        path = config_path()
        resources = encryption_config.encrypted_resources(path) if path else ["secrets"]
        try:
            found = etcd_census.take(write_key_name(state), resources, args_path=apiserver_args_path())
        except etcd_census.EtcdUnavailable as error:
            found = error
        _found[key] = found
    if isinstance(found, etcd_census.EtcdUnavailable):
        raise found
    return found


def refuse_unless_rewritten(state: Dict[str, Any], on_leader: bool = True) -> etcd_census.Census:
    """For the operator's confirmation: the census, or RotationRefused saying what is left or why it cannot tell."""
    try:
        found = census(state, fresh=True)
    except etcd_census.EtcdUnavailable as error:
        if not on_leader:
            raise rotation_state.RotationRefused(
                "the rewrite cannot be verified on this unit: {}; run this action on another unit whose"
                " kube-apiserver runs".format(error)
            ) from None
        raise rotation_state.RotationRefused(
            "the rewrite cannot be verified: {}; fix that and run this action again, or run it on another unit"
            " whose kube-apiserver runs (it verifies and hands the census to the leader), or run it here with"
            " force=true to take your word that every Secret was rewritten (a Secret that was not becomes"
            " unreadable when the old key leaves the files)".format(error)
        ) from None
    if not found.clean:
        raise rotation_state.RotationRefused(
            "{} of {} Secrets are not stored under {} yet: {}; rewrite them ({}) and run this action again".format(
                found.remaining, found.total, found.write_key, found.first_missing(), rotation_state.REWRITE_COMMANDS
            )
        )
    return found


def may_leave(app_kv: Any, state: Dict[str, Any], verified: bool) -> Tuple[Dict[str, Any], bool]:
    """The leader, every unit there, about to leave a rewrite phase: (the state now, whether to leave).

    Leaves on a forced confirmation, on one verified in this hook, or on one
    a census now confirms; a census that finds Secrets not under the write
    key withdraws the confirmation (written to Vault, logged, shown).  A
    census another unit verified (``verified_elsewhere``) confirms unless
    this unit's own census disagrees, which makes that census stale (so a
    passing etcd failure here later cannot bring it back).  A rotation with
    ``rewrite=auto`` rewrites and confirms here itself.  etcd unreadable and
    no census from elsewhere: stays, and the status says why.
    """
    if state.get("confirmed"):
        if state.get("forced") or verified:
            return state, True
        try:
            found = census(state)
        except etcd_census.EtcdUnavailable:
            return state, verified_elsewhere(state) is not None
        if found.clean:
            return state, True
        withdrawn = dict(state, confirmed=False, withdrawals=_withdrawals(state) + 1)
        app_kv[rotation_state.ROTATION_KEY] = withdrawn
        _log(
            "key rotation {}: confirmation withdrawn: {} Secrets are not under {} ({})".format(
                state["id"][:8], found.remaining, found.write_key, found.first_missing()
            ),
            hookenv.WARNING,
        )
        return withdrawn, False
    elsewhere = verified_elsewhere(state)
    if elsewhere is not None:
        try:
            found = census(state)
        except etcd_census.EtcdUnavailable:
            found = None
        if found is None or found.clean:
            confirmed = dict(state, confirmed=True)
            app_kv[rotation_state.ROTATION_KEY] = confirmed
            _log(
                "key rotation {}: rewrite confirmed: {}'s census found every Secret under {}{}".format(
                    state["id"][:8],
                    elsewhere,
                    write_key_name(state),
                    "" if found is None else ", and so did this unit's",
                )
            )
            return confirmed, True
        state = dict(state, withdrawals=_withdrawals(state) + 1)  # that census is stale: never used again
        app_kv[rotation_state.ROTATION_KEY] = state
        _log(
            "key rotation {}: {}'s census is stale: {} Secrets are not under {} now ({})".format(
                state["id"][:8], elsewhere, found.remaining, found.write_key, found.first_missing()
            ),
            hookenv.WARNING,
        )
    if state.get("rewrite") != AUTO or not _rewrite_automatically(state):
        return state, False
    confirmed = dict(state, confirmed=True)
    app_kv[rotation_state.ROTATION_KEY] = confirmed
    _log(
        "key rotation {}: every Secret is under {} (unattended rewrite)".format(state["id"][:8], write_key_name(state))
    )
    return confirmed, True


def verified_elsewhere(state: Dict[str, Any]) -> Optional[str]:
    """The other unit whose ``finish-encryption-key-rotation`` verified this phase's rewrite, if one did.

    Its census counts as the leader's would: in a rewrite phase every
    apiserver already writes with the write key, so what was under it then
    stays under it (a rollback or a charm's handler writing the old key back
    is what the leader's own census, when it can take one, is there to catch).
    """
    wanted = (state["id"], state["phase"], write_key_name(state), _withdrawals(state))
    for unit, record in sorted(rolling.read_verifications().items()):
        if (record.get("id"), record.get("phase"), record.get("write-key"), record.get("withdrawals", 0)) == wanted:
            return unit
    return None


def verification_record(state: Dict[str, Any], unit: str, found: etcd_census.Census) -> Dict[str, Any]:
    """What a unit other than the leader hands on after a clean census: names and counts, and how many
    confirmations were withdrawn so far (a withdrawal makes every earlier census stale)."""
    return {
        "unit": unit,
        "id": state["id"],
        "phase": state["phase"],
        "write-key": found.write_key,
        "total": found.total,
        "withdrawals": _withdrawals(state),
    }


def _withdrawals(state: Dict[str, Any]) -> int:
    count = state.get("withdrawals", 0)
    return count if isinstance(count, int) else 0


def _rewrite_automatically(state: Dict[str, Any]) -> bool:
    """Replace the Secrets not under the write key, within REWRITE_SECONDS; True once a census finds none left."""
    try:
        found = census(state)
    except etcd_census.EtcdUnavailable:
        return False
    if found.clean:
        return True
    from charms.layer.vault_kv.secure_storage import kubeconfig_path

    deadline = time.monotonic() + REWRITE_SECONDS
    try:
        result = kube_rewrite.rewrite(found.not_under, deadline, kubeconfig_path())
    except kube_rewrite.KubeApiUnavailable as error:
        _found[("rewrite", state["id"], state["phase"])] = str(error)
        return False
    _found[("rewrite", state["id"], state["phase"])] = result
    _log(
        "key rotation {}: unattended rewrite: {} replaced, {} deleted meanwhile, {} conflicts, {} refused{}".format(
            state["id"][:8],
            result.rewritten,
            result.gone,
            result.conflicts,
            len(result.refused),
            "" if result.finished else " (goes on at the next hook)",
        )
    )
    try:
        return census(state, fresh=True).clean
    except etcd_census.EtcdUnavailable:
        return False


def status_line(state: Dict[str, Any], others: Sequence[str] = ()) -> Tuple[str, str]:
    """(workload state, message) for the leader in a rewrite phase with every unit there.

    ``others``: the other units whose apiservers run with the phase's file,
    where the operator can run ``finish-encryption-key-rotation`` when this
    unit cannot read etcd.
    """
    phase_number = "{} of {}".format(rotation_state.REWRITES[state["phase"]], rotation_state.rewrites_in(state))
    try:
        found = census(state)
    except etcd_census.EtcdUnavailable as error:
        elsewhere = (
            "run finish-encryption-key-rotation on {} (it verifies there), or here with force=true".format(
                " or ".join(others)
            )
            if others
            else "run finish-encryption-key-rotation force=true"
        )
        return "blocked", (
            "key rotation: rewrite stored Secrets ({}); the rewrite cannot be verified on this unit: {}; once every"
            " Secret is rewritten ({}), {}; {}".format(
                phase_number, error, rotation_state.REWRITE_COMMANDS, elsewhere, rotation_state.NO_REFRESH
            )
        )
    if state.get("rewrite") == AUTO:
        outcome = _found.get(("rewrite", state["id"], state["phase"]))
        if isinstance(outcome, str):
            return "blocked", (
                "key rotation: unattended rewrite ({}) stopped: {}; {}; fix that (the next hook goes on), or rewrite"
                " them ({}) and run finish-encryption-key-rotation; {}".format(
                    phase_number, outcome, found.progress(), rotation_state.REWRITE_COMMANDS, rotation_state.NO_REFRESH
                )
            )
        if outcome is not None and outcome.refused:
            return "blocked", (
                "key rotation: unattended rewrite ({}): the Kubernetes API refused {} Secrets ({}); {}; rewrite"
                " them and run finish-encryption-key-rotation; {}".format(
                    phase_number,
                    len(outcome.refused),
                    ", ".join(outcome.refused[: etcd_census.SHOWN]),
                    found.progress(),
                    rotation_state.NO_REFRESH,
                )
            )
        return "maintenance", "key rotation: rewriting stored Secrets ({}): {}; {}".format(
            phase_number, found.progress(), rotation_state.NO_REFRESH
        )
    if state.get("confirmed") and not found.clean:
        return "blocked", (
            "key rotation: {} Secrets were stored under another key after the rewrite was confirmed ({}); {};"
            " rewrite them ({}) and run finish-encryption-key-rotation again; {}".format(
                found.remaining,
                found.first_missing(),
                found.progress(),
                rotation_state.REWRITE_COMMANDS,
                rotation_state.NO_REFRESH,
            )
        )
    if found.clean:
        return (
            "blocked",
            "key rotation: rewrite stored Secrets ({}): {}: run finish-encryption-key-rotation; {}".format(
                phase_number, found.progress(), rotation_state.NO_REFRESH
            ),
        )
    return "blocked", (
        "key rotation: rewrite stored Secrets ({}): {}; rewrite them ({}), then run"
        " finish-encryption-key-rotation; {}".format(
            phase_number, found.progress(), rotation_state.REWRITE_COMMANDS, rotation_state.NO_REFRESH
        )
    )
