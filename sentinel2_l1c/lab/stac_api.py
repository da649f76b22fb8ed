"""A small STAC API over the lab's synthetic products, searchable by the real pystac-client.

Serves the ``sentinel-2-l1c`` collection as CDSE does (``stac.dataspace.copernicus.eu/v1``):
landing page, conformance, collection, and ``/search`` (GET and POST) with ``collections``,
``ids``, ``datetime``, ``limit``, CQL2 ``filter`` (text or JSON; equality comparisons joined
by AND, e.g. ``grid:code = 'MGRS-35VLH'``) and next-link paging. Items carry CDSE's fields:
id (product name without ``.SAFE``), ``datetime``, ``grid:code``, ``processing:version``,
``sat:relative_orbit``, ``proj:code``, band assets at ``s3://eodata/…`` (each with its grid,
``proj:shape`` and ``proj:transform``, and ``raster:bands``: what STAC loaders such as odc-stac
read a band by) and an ``enclosure`` link to the SAFE folder. Beside it, the STAC the tool writes for its own formats (``formats.cog_stac``,
``formats.zarr_stac``) is served as static catalogues, ``/catalogues/{format}/…``: every JSON
document of a format's folder on the lab's network drive, linked from the landing page as a
child once its root document is there, its relative links resolving on the server. Runs in a
thread of the calling process.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from sentinel2_l1c.formats import cog_stac, zarr_stac
from sentinel2_l1c.s2.bands import band_resolution
from sentinel2_l1c.s2.names import format_utc, parse_utc
from sentinel2_l1c.s2.product import SafeProduct

log = logging.getLogger(__name__)

COLLECTION = "sentinel-2-l1c"
SOURCE_BUCKET = "eodata"
DEFAULT_LIMIT, MAX_LIMIT = 10, 1000
CONFORMANCE = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/collections",
    "https://api.stacspec.org/v1.0.0/item-search",
    "https://api.stacspec.org/v1.0.0/item-search#filter",
    "https://api.stacspec.org/v1.0.0/ogcapi-features",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
]
_EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
    "https://stac-extensions.github.io/grid/v1.1.0/schema.json",
    "https://stac-extensions.github.io/processing/v1.2.0/schema.json",
    cog_stac.PROJECTION,
    cog_stac.RASTER,
]


class BadRequest(ValueError):
    """A search parameter the API cannot answer: HTTP 400 with this message."""


# --------------------------------------------------------------------------------------
# Items
# --------------------------------------------------------------------------------------


def stac_item(product: SafeProduct, bucket: str = SOURCE_BUCKET) -> dict[str, Any]:
    """The STAC item of ``product`` as CDSE publishes it (hrefs in ``bucket``)."""
    safe_href = f"s3://{bucket}/{product.name.cdse_path}"
    geometry, bbox = product.outline()
    when = format_utc(product.start_time, 3)
    assets = {
        band: {
            "href": f"{safe_href}/{path.relative_to(product.path).as_posix()}",
            "type": "image/jp2",
            "roles": ["data"],
            "gsd": grid.resolution,
            "proj:shape": list(grid.shape),
            "proj:transform": list(grid.transform)[:6],
            "raster:bands": [cog_stac.raster_band(product, band)],
        }
        for band, path in product.band_paths.items()
        for grid in [product.grid(band_resolution(band))]
    }
    assets["product_metadata"] = {
        "href": f"{safe_href}/MTD_MSIL1C.xml",
        "type": "application/xml",
        "roles": ["metadata"],
    }
    assets["safe_manifest"] = {
        "href": f"{safe_href}/manifest.safe",
        "type": "application/xml",
        "roles": ["metadata"],
    }
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": _EXTENSIONS,
        "id": product.product_id,
        "collection": COLLECTION,
        "geometry": geometry,
        "bbox": bbox,
        "properties": {
            "datetime": when,
            "start_datetime": when,
            "end_datetime": when,
            "platform": product.spacecraft.lower(),
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "grid:code": f"MGRS-{product.tile}",
            "proj:code": product.crs,
            "processing:version": product.processing_baseline,
            "processing:level": "L1",
            "product:type": "S2MSI1C",
            "sat:relative_orbit": product.orbit_number,
            "sat:orbit_state": product.orbit_direction.lower(),
            "eo:cloud_cover": product.cloud_cover,
            "published": format_utc(product.generation_time, 3),
        },
        "assets": assets,
        "links": [
            {"rel": "enclosure", "href": f"{safe_href}/", "type": "application/x-directory"},
        ],
    }


# --------------------------------------------------------------------------------------
# Search (pure: parameters in, page of items out)
# --------------------------------------------------------------------------------------

_CQL2_TERM = re.compile(
    r"""^\s*"?([A-Za-z_][\w:.\-]*)"?\s*=\s*('(?:[^']|'')*'|-?\d+(?:\.\d+)?)\s*$"""
)
_AND = re.compile(r"\s+AND\s+(?=(?:[^']*'[^']*')*[^']*$)", re.IGNORECASE)


def parse_cql2_text(text: str) -> dict[str, Any]:
    """``a = 'x' AND b = 3`` → {property: value}; anything else is a BadRequest."""
    conditions: dict[str, Any] = {}
    for term in _AND.split(text.strip()):
        match = _CQL2_TERM.match(term)
        if not match:
            raise BadRequest(f"unsupported CQL2 text filter term: {term.strip()!r}")
        value = match[2]
        conditions[match[1]] = (
            value[1:-1].replace("''", "'") if value.startswith("'") else float(value)
        )
    return conditions


def parse_cql2_json(expression: Any) -> dict[str, Any]:
    """``{"op": "=", "args": [{"property": p}, v]}`` or an ``and`` of such."""
    if not isinstance(expression, dict) or "op" not in expression:
        raise BadRequest("CQL2 JSON filter must be an object with 'op' and 'args'")
    op, args = str(expression["op"]).lower(), expression.get("args", [])
    if op == "and":
        conditions: dict[str, Any] = {}
        for arg in args:
            conditions.update(parse_cql2_json(arg))
        return conditions
    if op == "=" and len(args) == 2 and isinstance(args[0], dict) and "property" in args[0]:
        return {args[0]["property"]: args[1]}
    raise BadRequest(f"unsupported CQL2 JSON operator {expression['op']!r}")


def parse_interval(text: str) -> tuple[datetime | None, datetime | None]:
    """A STAC ``datetime`` parameter: an instant or ``start/end`` with ``..`` for open ends."""
    try:
        if "/" not in text:
            instant = parse_utc(text)
            return instant, instant
        start, end = text.split("/", 1)
        return (
            None if start in ("", "..") else parse_utc(start),
            None if end in ("", "..") else parse_utc(end),
        )
    except ValueError:
        raise BadRequest(f"invalid datetime {text!r}") from None


@dataclass(frozen=True)
class SearchRequest:
    """Normalised search parameters, whether they came by GET or POST."""

    collections: tuple[str, ...] | None = None
    ids: tuple[str, ...] | None = None
    start: datetime | None = None
    end: datetime | None = None
    conditions: tuple[tuple[str, Any], ...] = ()
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> SearchRequest:
        """A POST body (``filter`` as CQL2 JSON, or text with ``filter-lang: cql2-text``)."""
        conditions: dict[str, Any] = {}
        if body.get("filter") is not None:
            if isinstance(body["filter"], str):
                conditions = parse_cql2_text(body["filter"])
            else:
                conditions = parse_cql2_json(body["filter"])
        start, end = parse_interval(body["datetime"]) if body.get("datetime") else (None, None)
        return cls(
            collections=_as_tuple(body.get("collections")),
            ids=_as_tuple(body.get("ids")),
            start=start,
            end=end,
            conditions=tuple(conditions.items()),
            limit=_limit(body.get("limit")),
            offset=_offset(body.get("token")),
        )

    @classmethod
    def from_query(cls, query: dict[str, list[str]]) -> SearchRequest:
        """GET parameters (comma-separated lists; ``filter`` in cql2-text or cql2-json)."""
        first = {key: values[0] for key, values in query.items() if values}
        body: dict[str, Any] = {
            "collections": first["collections"].split(",") if "collections" in first else None,
            "ids": first["ids"].split(",") if "ids" in first else None,
            "datetime": first.get("datetime"),
            "limit": first.get("limit"),
            "token": first.get("token"),
        }
        if "filter" in first:
            if first.get("filter-lang", "cql2-text") == "cql2-json":
                try:
                    body["filter"] = json.loads(first["filter"])
                except json.JSONDecodeError:
                    raise BadRequest("filter is not valid CQL2 JSON") from None
            else:
                body["filter"] = first["filter"]
        return cls.from_json(body)

    def matches(self, item: dict[str, Any]) -> bool:
        if self.collections is not None and item["collection"] not in self.collections:
            return False
        if self.ids is not None and item["id"] not in self.ids:
            return False
        when = parse_utc(item["properties"]["datetime"])
        if (self.start and when < self.start) or (self.end and when > self.end):
            return False
        for name, value in self.conditions:
            actual = (
                item.get(name) if name in ("id", "collection") else item["properties"].get(name)
            )
            if actual != value:
                return False
        return True

    def page_json(self, offset: int) -> dict[str, Any]:
        """This request as a POST body for the page at ``offset``."""
        body: dict[str, Any] = {"limit": self.limit, "token": str(offset)}
        if self.collections is not None:
            body["collections"] = list(self.collections)
        if self.ids is not None:
            body["ids"] = list(self.ids)
        if self.start or self.end:
            body["datetime"] = "/".join(
                format_utc(moment, 3) if moment else ".." for moment in (self.start, self.end)
            )
        if self.conditions:
            body["filter-lang"] = "cql2-json"
            body["filter"] = {
                "op": "and",
                "args": [
                    {"op": "=", "args": [{"property": name}, value]}
                    for name, value in self.conditions
                ],
            }
        return body


def _as_tuple(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


def _limit(value: Any) -> int:
    try:
        limit = DEFAULT_LIMIT if value is None else int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"limit must be an integer, got {value!r}") from None
    if limit < 1:
        raise BadRequest(f"limit must be positive, got {limit}")
    return min(limit, MAX_LIMIT)


def _offset(token: Any) -> int:
    try:
        return 0 if token is None else max(0, int(token))
    except (TypeError, ValueError):
        raise BadRequest(f"invalid paging token {token!r}") from None


# --------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------


#: Root documents of the tool's own STAC (a COG tree's catalogue, a Zarr store's Collection)
CATALOGUE_ROOTS = (cog_stac.ROOT, zarr_stac.COLLECTION)


class StacApi:
    """The lab's STAC API on 127.0.0.1 (port 0 = a free one), serving ``items`` and the
    ``catalogues`` (name → folder) of the tool's formats."""

    def __init__(
        self,
        items: Iterable[dict[str, Any]],
        port: int = 0,
        catalogues: Mapping[str, Path] | None = None,
    ) -> None:
        self.items = sorted(items, key=lambda item: (item["properties"]["datetime"], item["id"]))
        self.catalogues = dict(catalogues or {})
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @classmethod
    def from_products(
        cls,
        products: Iterable[SafeProduct],
        port: int = 0,
        catalogues: Mapping[str, Path] | None = None,
    ) -> StacApi:
        return cls((stac_item(product) for product in products), port, catalogues)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> StacApi:
        self.thread.start()
        log.info("STAC API with %d items at %s", len(self.items), self.url)
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StacApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- documents ----------------------------------------------------------------

    def landing(self) -> dict[str, Any]:
        url = self.url
        return {
            "type": "Catalog",
            "stac_version": "1.1.0",
            "id": "dslab-lab-cdse",
            "title": "datacube-storage-lab: local stand-in for the CDSE STAC API",
            "description": "Synthetic Sentinel-2 L1C products of the offline lab.",
            "conformsTo": CONFORMANCE,
            "links": [
                {"rel": "self", "href": url, "type": "application/json"},
                {"rel": "root", "href": url, "type": "application/json"},
                {"rel": "conformance", "href": f"{url}/conformance", "type": "application/json"},
                {"rel": "data", "href": f"{url}/collections", "type": "application/json"},
                {
                    "rel": "child",
                    "href": f"{url}/collections/{COLLECTION}",
                    "type": "application/json",
                },
                *self.catalogue_links(),
                {
                    "rel": "search",
                    "href": f"{url}/search",
                    "type": "application/geo+json",
                    "method": "GET",
                },
                {
                    "rel": "search",
                    "href": f"{url}/search",
                    "type": "application/geo+json",
                    "method": "POST",
                },
            ],
        }

    def catalogue_links(self) -> list[dict[str, Any]]:
        """A child link to each of the tool's catalogues whose root document is written."""
        return [
            {"rel": "child", "href": f"{self.url}/catalogues/{name}/{root}",
             "type": "application/json", "title": f"the {name} format's own STAC"}
            for name, folder in sorted(self.catalogues.items())
            for root in CATALOGUE_ROOTS
            if (folder / root).is_file()
        ]  # fmt: skip

    def catalogue_document(self, path: str) -> bytes | None:
        """``/catalogues/{name}/{relative}.json`` as stored; None if it is not one."""
        name, _, relative = path.removeprefix("/catalogues/").partition("/")
        folder = self.catalogues.get(name)
        parts = PurePosixPath(relative).parts
        if folder is None or not relative.endswith(".json") or ".." in parts:
            return None
        try:
            return (folder / relative).read_bytes()
        except OSError:
            return None

    def collection(self) -> dict[str, Any]:
        times = [item["properties"]["datetime"] for item in self.items]
        return {
            "type": "Collection",
            "stac_version": "1.1.0",
            "id": COLLECTION,
            "title": "Sentinel-2 Level-1C (synthetic)",
            "description": "Synthetic Sentinel-2 L1C products of the offline lab.",
            "license": "other",
            "extent": {
                "spatial": {"bbox": [[-180, -90, 180, 90]]},
                "temporal": {
                    "interval": [[times[0] if times else None, times[-1] if times else None]]
                },
            },
            "links": [
                {"rel": "self", "href": f"{self.url}/collections/{COLLECTION}"},
                {"rel": "root", "href": self.url},
                {"rel": "items", "href": f"{self.url}/collections/{COLLECTION}/items"},
            ],
        }

    def search(self, request: SearchRequest, method: str) -> dict[str, Any]:
        matched = [item for item in self.items if request.matches(item)]
        page = matched[request.offset : request.offset + request.limit]
        links: list[dict[str, Any]] = [{"rel": "root", "href": self.url}]
        following = request.offset + request.limit
        if following < len(matched):
            body = request.page_json(following)
            if method == "POST":
                links.append(
                    {"rel": "next", "href": f"{self.url}/search", "method": "POST", "body": body}
                )
            else:
                query = {k: json.dumps(v) if k == "filter" else v for k, v in body.items()}
                for key in ("collections", "ids"):
                    if key in query:
                        query[key] = ",".join(query[key])
                links.append(
                    {
                        "rel": "next",
                        "href": f"{self.url}/search?{urlencode(query)}",
                        "method": "GET",
                    }
                )
        return {
            "type": "FeatureCollection",
            "features": [self._with_links(item) for item in page],
            "links": links,
            "numberMatched": len(matched),
            "numberReturned": len(page),
        }

    def _with_links(self, item: dict[str, Any]) -> dict[str, Any]:
        own = [
            {"rel": "self", "href": f"{self.url}/collections/{COLLECTION}/items/{item['id']}"},
            {"rel": "collection", "href": f"{self.url}/collections/{COLLECTION}"},
            {"rel": "root", "href": self.url},
        ]
        return {**item, "links": item["links"] + own}


def _handler_for(api: StacApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # no 40 ms stall between headers and body

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            parts = urlsplit(self.path)
            path = parts.path.rstrip("/")
            routes = {
                "": api.landing,
                "/conformance": lambda: {"conformsTo": CONFORMANCE},
                "/collections": lambda: {"collections": [api.collection()], "links": []},
                f"/collections/{COLLECTION}": api.collection,
            }
            if path in routes:
                self._send(HTTPStatus.OK, routes[path]())
            elif path.startswith("/catalogues/"):
                document = api.catalogue_document(path)
                if document is None:
                    self._send(HTTPStatus.NOT_FOUND, {"code": "NotFound", "description": path})
                else:
                    self._send_bytes(HTTPStatus.OK, document, "application/json")
            elif path in ("/search", f"/collections/{COLLECTION}/items"):
                self._search(lambda: SearchRequest.from_query(parse_qs(parts.query)), "GET")
            else:
                self._send(HTTPStatus.NOT_FOUND, {"code": "NotFound", "description": path})

        def do_POST(self) -> None:  # noqa: N802
            if urlsplit(self.path).path.rstrip("/") != "/search":
                self._send(HTTPStatus.NOT_FOUND, {"code": "NotFound", "description": self.path})
                return
            length = int(self.headers.get("Content-Length", 0))

            def request() -> SearchRequest:
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    raise BadRequest("request body is not JSON") from None
                return SearchRequest.from_json(body)

            self._search(request, "POST")

        def _search(self, make_request: Any, method: str) -> None:
            try:
                request = make_request()
            except BadRequest as error:
                self._send(
                    HTTPStatus.BAD_REQUEST, {"code": "InvalidParameter", "description": str(error)}
                )
                return
            self._send(HTTPStatus.OK, api.search(request, method), "application/geo+json")

        def _send(
            self, status: HTTPStatus, document: dict[str, Any], kind: str = "application/json"
        ) -> None:
            self._send_bytes(status, json.dumps(document).encode(), kind)

        def _send_bytes(self, status: HTTPStatus, data: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("STAC API: " + format, *args)

    return Handler
