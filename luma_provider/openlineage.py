"""OpenLineage datasets of Luma tasks: what a generate or download task read and produced.

The operators' ``get_openlineage_facets_on_complete`` methods call ``generate_lineage`` and
``download_lineage``; everything else here is pure naming, following the OpenLineage naming
conventions (https://openlineage.io/docs/spec/naming) so the datasets join other producers':

===========================================  ============================  ========================
where                                        namespace                     name
===========================================  ============================  ========================
a Luma generation                            ``luma://<host[:port]>``      ``generations/<id>``
``s3://bucket/key`` (also s3a, s3n)          ``s3://bucket``               ``key``
``gs://bucket/key`` (also gcs)               ``gs://bucket``               ``key``
``file:///path`` or a local path ``/path``   ``file``                      ``/path``
``https://host/path?query`` (keyframe URL)   ``https://host``              ``/path`` (no query)
other ``scheme://authority/path``            ``scheme://authority``        ``path``
===========================================  ============================  ========================

Query strings and fragments are always dropped (a keyframe URL's query may carry a signed
token), and so are an http(s) path's ``;params`` and any ``user[:password]@`` (an
``ObjectStoragePath``'s connection id, or a credential); ``data:`` URIs are inline images, not
datasets, and are skipped. For a bucket, ``s3://conn_id@bucket/key`` is named like ``s3://bucket/key``.

Nothing here imports Airflow or OpenLineage at module load: only ``operator_lineage`` imports
the OpenLineage provider (``pip install 'airflow-provider-luma[openlineage]'``), when a task's
lineage is extracted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

#: Namespace scheme of Luma generations: ``luma://<host>/generations/<id>``.
GENERATION_SCHEME = "luma"
#: URI schemes with the same meaning under another name (OpenLineage uses the first).
_SCHEME_ALIASES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
#: Schemes whose authority is a bucket: namespace ``<scheme>://<bucket>``, name the key.
_BUCKET_SCHEMES = ("s3", "gs")


@dataclass(frozen=True, order=True)
class DatasetName:
    """An OpenLineage dataset's identity: ``namespace`` + ``name`` (together, its URI).

    :param namespace: the data source, e.g. ``s3://bucket`` or ``luma://api.lumalabs.ai``.
    :param name: the dataset within it, e.g. ``videos/2026-11-25/<id>.mp4``.
    """

    namespace: str
    name: str

    @property
    def uri(self) -> str:
        """The dataset as one URI (``file`` datasets as ``file://<path>``)."""
        if self.namespace == "file":
            return f"file://{self.name}"
        sep = "" if self.name.startswith("/") else "/"
        return f"{self.namespace}{sep}{self.name}"


# ----------------------------------------------------------------------------- naming
def generation_dataset(base_url: str, generation_id: str) -> DatasetName:
    """A Luma generation: namespace ``luma://<host[:port]>`` of the connection, name ``generations/<id>``.

    :param base_url: the connection's base URL (``hook.settings.base_url``); only its host and
        port are used, so the official API (``https://api.lumalabs.ai/dream-machine/v1``) and a
        gateway are told apart by host.
    :param generation_id: the generation's id.
    """
    authority = _authority(urlsplit(base_url)).lower()
    return DatasetName(f"{GENERATION_SCHEME}://{authority}", f"generations/{generation_id}")


def uri_dataset(uri: Any) -> DatasetName | None:
    """The dataset of a storage URI, local path or http(s) URL; None for ``data:`` URIs and non-strings.

    A path without a scheme is a local file (made absolute, as the task that read it saw it).
    """
    if not isinstance(uri, str) or not uri.strip():
        return None
    uri = uri.strip()
    if uri[:5].lower() == "data:":
        return None
    if "://" not in uri and uri[:5].lower() != "file:":
        return DatasetName("file", os.path.abspath(uri))
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    scheme = _SCHEME_ALIASES.get(parts.scheme.lower(), parts.scheme.lower())
    if not scheme:
        return None
    if scheme == "file":
        authority = _authority(parts)
        return DatasetName(f"file://{authority}" if authority else "file", parts.path or "/")
    if scheme in ("http", "https"):  # ";params" too may carry a session (;jsessionid=...)
        return DatasetName(f"{scheme}://{_authority(parts).lower()}", parts.path.split(";")[0] or "/")
    # Buckets (s3, gs) and any other scheme://authority/path: the key/path, without its leading "/".
    authority = _authority(parts, keep_user=scheme not in _BUCKET_SCHEMES)
    return DatasetName(f"{scheme}://{authority}", parts.path.lstrip("/") or "/")


def keyframe_dataset(url: Any) -> DatasetName | None:
    """A keyframe image: http(s) URLs only (``data:`` URIs are inline pixels, not datasets)."""
    name = uri_dataset(url)
    return name if name is not None and name.namespace.startswith(("http://", "https://")) else None


def inlet_uri(inlet: Any) -> str | None:
    """The URI of an Airflow inlet: an ``Asset`` (its ``uri``), an ``ObjectStoragePath`` or a string.

    Anything else (an ``AssetAlias``, a lineage ``Table``...) has no URI here: None.
    """
    if isinstance(inlet, str):
        return inlet
    uri = getattr(inlet, "uri", None)
    if isinstance(uri, str):
        return uri
    if hasattr(inlet, "protocol"):  # ObjectStoragePath: str() is its URI
        return str(inlet)
    if isinstance(inlet, os.PathLike):
        return str(os.fspath(inlet))
    return None


def _authority(parts: Any, *, keep_user: bool = False) -> str:
    """``host[:port]`` without ``user[:password]@``.

    :param keep_user: keep a ``user@`` without a password (Azure's ``container@account``).
    """
    netloc: str = parts.netloc
    user, at, host = netloc.rpartition("@")
    return netloc if at and keep_user and ":" not in user else host


# ----------------------------------------------------------------------------- task results
def generation_ids(value: Any, *, completed_only: bool = False) -> list[str]:
    """The generation ids in a generate/sensor/download value, in order, without repeats.

    Understands an id, a generation dict (``{"id": ...}``), a download result
    (``{"generation_id": ...}``), a batch result (``{"prompts": [{"generation_id": ...}]}``) and
    lists of these.

    :param completed_only: of a batch result, only the prompts whose state is ``completed``
        (what the download operator downloads).
    """
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            if item.strip():
                found.append(item.strip())
        elif isinstance(item, Mapping):
            if isinstance(item.get("prompts"), list) and "total" in item:
                for entry in item["prompts"]:
                    if isinstance(entry, Mapping) and (
                        not completed_only or entry.get("state") == "completed"
                    ):
                        walk(entry.get("generation_id"))
            else:
                walk(item.get("id") or item.get("generation_id"))
        elif isinstance(item, (list, tuple)):
            for sub in item:
                walk(sub)

    walk(value)
    return list(dict.fromkeys(found))


def written_uris(value: Any) -> list[str]:
    """The URIs a download task wrote: its result (a URI, a ``{"video", "thumbnail"}`` dict, or a list)."""
    found: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, Mapping):
            for key in ("video", "thumbnail"):
                if isinstance(item.get(key), str):
                    found.append(item[key])
        elif isinstance(item, (list, tuple)):
            for sub in item:
                walk(sub)

    walk(value)
    return list(dict.fromkeys(found))


def keyframe_urls(
    image_url: Any = None, image_end_url: Any = None, prompts: Sequence[Any] | None = None
) -> list[str]:
    """The keyframes of a generate task: its own ``image_url``/``image_end_url`` and each batch prompt's.

    A batch prompt's own keyframe replaces the shared one, so a shared keyframe every prompt
    overrides is not listed.
    """
    shared = {"image_url": image_url, "image_end_url": image_end_url}
    if not prompts:
        urls = [image_url, image_end_url]
    else:
        urls = []
        for prompt in prompts:
            row = prompt if isinstance(prompt, Mapping) else {}
            urls += [row.get(k) if row.get(k) is not None else shared[k] for k in shared]
    return list(dict.fromkeys(u for u in urls if isinstance(u, str) and u.strip()))


# ----------------------------------------------------------------------------- the lineage
def generate_datasets(
    *,
    base_url: str,
    result: Any,
    prompt_source: Any = None,
    inlets: Iterable[Any] = (),
    keyframes: Iterable[Any] = (),
    extend_generation_id: Any = None,
) -> tuple[list[DatasetName], list[DatasetName]]:
    """Inputs and outputs of a generate task.

    Inputs: the prompt source, the task's inlets, the keyframe URLs and, for an extension, the
    generation it extends. Outputs: every generation the task submitted (a batch's refused
    prompts have none).
    """
    inputs = [uri_dataset(prompt_source), *(uri_dataset(inlet_uri(i)) for i in inlets)]
    inputs += [keyframe_dataset(url) for url in keyframes]
    if isinstance(extend_generation_id, str) and extend_generation_id.strip():
        inputs.append(generation_dataset(base_url, extend_generation_id.strip()))
    outputs = [generation_dataset(base_url, gid) for gid in generation_ids(result)]
    return _unique(inputs), _unique(outputs)


def download_datasets(
    *, base_url: str, requested: Any, result: Any, inlets: Iterable[Any] = ()
) -> tuple[list[DatasetName], list[DatasetName]]:
    """Inputs and outputs of a download task.

    :param requested: the task's ``generation_id`` input (ids, generation dicts or a batch
        result, of which only the completed prompts are downloaded).
    :param result: the task's result: the URIs written, as bare URIs or ``{"generation_id",
        "video", "thumbnail"}`` dicts. When it names its generations (dicts), those are the
        inputs; otherwise the requested ones are.
    """
    named = [r for r in (result if isinstance(result, (list, tuple)) else [result]) if isinstance(r, Mapping)]
    ids = generation_ids(named) if named else generation_ids(requested, completed_only=True)
    inputs: list[DatasetName | None] = [generation_dataset(base_url, gid) for gid in ids]
    inputs += [uri_dataset(inlet_uri(i)) for i in inlets]
    outputs = [uri_dataset(uri) for uri in written_uris(result)]
    return _unique(inputs), _unique(outputs)


def own_xcom(task_instance: Any, *keys: str) -> Any:
    """The first of these XCom keys that this task instance pushed (None when none was).

    :param task_instance: the task instance the OpenLineage listener hands to
        ``get_openlineage_facets_on_complete`` (after a deferral too, where the operator object
        is a fresh one and only XCom knows what the task did).
    """
    for key in keys:
        value = task_instance.xcom_pull(
            task_ids=task_instance.task_id, key=key, map_indexes=task_instance.map_index
        )
        if value is not None:
            return value
    return None


def operator_lineage(
    inputs: Iterable[DatasetName], outputs: Iterable[DatasetName]
) -> OperatorLineage[Any, Any]:
    """OpenLineage's ``OperatorLineage`` of these datasets (imports the OpenLineage provider)."""
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    return OperatorLineage(
        inputs=[Dataset(namespace=d.namespace, name=d.name) for d in inputs],
        outputs=[Dataset(namespace=d.namespace, name=d.name) for d in outputs],
    )


def _unique(names: Iterable[DatasetName | None]) -> list[DatasetName]:
    return list(dict.fromkeys(n for n in names if n is not None))
