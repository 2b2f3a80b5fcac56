"""A test double of InterSystems IRIS for the production's Python side: only IRIS is stood in.

IoP reaches IRIS through ``iop.runtime.iris.get_iris()``; the double answers the few calls
IoP makes (as in IoP's own unit tests, src/tests/unit/conftest.py): ``IOP.Message`` bodies
and global streams for message serialization, ``IOP.Director`` for creating business
services. :class:`ProductionDouble` plays the production engine from the real typed graph
(``aistack.interop.settings.prod``):

* components are made as IRIS makes them: ``__new__`` (no ``__init__``), settings set as
  attributes, ``_set_iris_handles``, then ``_dispatch_on_init``; a business process gets a
  new object for every message, operations keep theirs, services are made per request;
* messages go through the entry points IRIS calls (``_dispatch_on_message``,
  ``_dispatch_on_request``), so IoP serializes and deserializes every one of them;
* ``send_request_async`` puts the serialized message in a :class:`QueueDouble`, which
  outlives a production (IRIS keeps queues in its database): a new production over the
  same queue is a restarted one.

What it does not do: run components in separate jobs, time out, retry, or alert.
"""

from __future__ import annotations

import email.parser
import email.policy
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from iop import BusinessOperation, BusinessProcess, BusinessService, Production

IRIS_STRING_LIMIT = 3_641_144
"""IRIS's longest string: a longer form value arrives as a stream."""


class StreamDouble:
    """``%Stream.GlobalCharacter`` / ``%CSP.BinaryStream``: ``Write``, ``Read``, ``AtEnd``."""

    __module__ = "iris"

    def __init__(self, value: str = "", file_name: str | None = None) -> None:
        self._value = value
        self._position = 0
        if file_name is not None:
            self.FileName = file_name

    @property
    def AtEnd(self) -> bool:
        return self._position >= len(self._value)

    def Rewind(self) -> None:
        self._position = 0

    def Read(self, size: int = 32000) -> str:
        value = self._value[self._position : self._position + size]
        self._position += len(value)
        return value

    def Write(self, value: str) -> None:
        self._value += value

    def _IsA(self, classname: str) -> bool:
        return classname in ("%Stream.Object", "%Stream.GlobalCharacter")


class MessageDouble:
    """An ``IOP.Message`` body: class name and JSON (a stream beyond ``buffer``)."""

    __module__ = "iris"
    buffer = 1_000_000  # IOP.Message's BUFFER parameter

    def __init__(self, iris_classname: str = "IOP.Message") -> None:
        self._iris_classname = iris_classname
        self.classname = ""
        self._json: Any = ""
        self.type = "String"

    @property
    def json(self) -> Any:
        return self._json

    @json.setter
    def json(self, value: Any) -> None:
        self._json = value
        self.type = "Stream" if isinstance(value, StreamDouble) else "String"

    def text(self) -> str:
        if isinstance(self._json, StreamDouble):
            self._json.Rewind()
            return "".join(iter(lambda: self._json.Read(1_000_000), ""))
        return self._json

    def _ClassName(self, full: int = 1) -> str:
        return self._iris_classname

    def _IsA(self, classname: str) -> bool:
        return classname == self._iris_classname

    def _Id(self) -> None:
        return None


class ClassDouble:
    def __init__(self, iris: IrisDouble, classname: str) -> None:
        self._iris = iris
        self._classname = classname

    def _New(self) -> Any:
        if self._classname == "%Stream.GlobalCharacter":
            return StreamDouble()
        return MessageDouble(self._classname)

    def Log(self, level: int, class_name: str, method: str, text: str) -> None:
        """``Ens.Util.Log``: the production's Event Log (2 error, 3 warning, 4 info)."""
        self._iris.event_log.append((level, class_name, text))

    def WriteToConsoleLog(self, text: str, *rest: Any) -> None:
        """``%SYS.System``: messages.log."""
        self._iris.event_log.append((0, "console", text))

    def dispatchCreateBusinessService(self, item: str) -> Any:
        """``IOP.Director``: ``Ens.Director.CreateBusinessService`` on the running production."""
        if self._classname != "IOP.Director" or self._iris.production is None:
            raise RuntimeError(f"ERROR #6142: no running production has {item!r}")
        return self._iris.production.create_business_service(item)


class IrisDouble:
    """What ``iop.runtime.iris.get_iris()`` returns: ``cls(name)`` and nothing else used."""

    def __init__(self) -> None:
        self.production: ProductionDouble | None = None
        self.event_log: list[tuple[int, str, str]] = []

    def cls(self, classname: str) -> ClassDouble:
        return ClassDouble(self, classname)


@dataclass
class QueueDouble:
    """IRIS's persistent queues: messages sent asynchronously and not yet processed."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)
    """(target item, message class name, JSON): what IRIS keeps on disk."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, target: str, message: MessageDouble) -> None:
        with self.lock:
            self.entries.append((target, message.classname, message.text()))

    def take(self) -> tuple[str, MessageDouble] | None:
        with self.lock:
            if not self.entries:
                return None
            target, classname, text = self.entries.pop(0)
        message = MessageDouble()
        message.classname, message.json = classname, text
        return target, message

    def __len__(self) -> int:
        return len(self.entries)


class HostDouble:
    """The ObjectScript host object behind a component (its ``iris_handle``)."""

    def __init__(self, production: ProductionDouble, item: str) -> None:
        self.production = production
        self.item = item

    def dispatchSendRequestSync(self, target: str, request: Any, timeout: Any, description: str):
        self.production.sent.append((self.item, target, "sync"))
        return self.production.deliver(target, request)

    def dispatchSendRequestAsync(self, target: str, request: Any, *rest: Any) -> None:
        self.production.sent.append((self.item, target, "async"))
        self.production.queue.put(target, request)

    def GetClass(self) -> Any:
        return self.component


class ProductionDouble:
    """A running production made from an IoP ``Production`` graph, in this process."""

    def __init__(
        self,
        production: Production,
        iris: IrisDouble,
        queue: QueueDouble | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.items = {item.name: item for item in production.items}
        self.iris = iris
        self.queue = queue if queue is not None else QueueDouble()
        self.overrides = overrides or {}
        self.sent: list[tuple[str, str, str]] = []
        self._operations: dict[str, BusinessOperation] = {}
        self._lock = threading.Lock()
        iris.production = self

    def settings(self, item: str) -> dict[str, Any]:
        declared = dict(self.items[item].host_settings)
        return {**declared, **self.overrides.get(item, {})}

    def component(self, item: str) -> tuple[Any, HostDouble]:
        """A new, started component for ``item``, as IRIS makes one."""
        ref = self.items[item]
        component = ref.component_class.__new__(ref.component_class)
        for name, value in self.settings(item).items():
            setattr(component, name, value)  # IRIS sets each setting as an attribute
        host = HostDouble(self, item)
        host.component = component
        component._set_iris_handles(host, None)
        component._dispatch_on_init(host)
        return component, host

    def create_business_service(self, item: str) -> HostDouble:
        if not issubclass(self.items[item].component_class, BusinessService):
            raise RuntimeError(f"{item} is not a business service")
        _, host = self.component(item)
        return host

    def deliver(self, target: str, message: Any) -> Any:
        """Hand a serialized message to ``target`` as IRIS does; its serialized answer."""
        component_class = self.items[target].component_class
        if issubclass(component_class, BusinessProcess):
            process, host = self.component(target)  # a new instance for every message
            return process._dispatch_on_request(host, message)
        if issubclass(component_class, BusinessOperation):
            with self._lock:
                operation = self._operations.get(target)
                if operation is None:
                    operation = self._operations[target] = self.component(target)[0]
            return operation._dispatch_on_message(message)
        raise RuntimeError(f"{target} does not take messages")

    def deliver_queued(self) -> int:
        """Process what waits in the queues (IRIS's jobs would); how many were delivered."""
        delivered = 0
        while (entry := self.queue.take()) is not None:
            self.deliver(*entry)
            delivered += 1
        return delivered

    def stop(self) -> None:
        for operation in self._operations.values():
            operation._dispatch_on_tear_down(None)
        self._operations.clear()
        if self.iris.production is self:
            self.iris.production = None


class CspRequestDouble:
    """A ``%CSP.Request`` as the CSP server fills it, from the request's bytes.

    Query parameters and form fields go to ``Data`` (query first), file parts of a multipart
    body to ``MimeData`` (streams with ``FileName``), a body CSP does not parse to
    ``Content``. Names iterate in IRIS's collation order (``$Order``), as ``Next`` does.
    """

    def __init__(
        self,
        method: str,
        url: str,
        content_type: str = "",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.Method = method
        self.URL = parts.path
        self.ContentType = content_type
        self._cgi = {"QUERY_STRING": parts.query, "REQUEST_METHOD": method}
        for name, value in (headers or {}).items():
            self._cgi["HTTP_" + name.upper().replace("-", "_")] = value
        self._data: dict[str, list[Any]] = defaultdict(list)
        self._mime: dict[str, list[StreamDouble]] = defaultdict(list)
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            self._data[name].append(value)
        kind = content_type.split(";")[0].strip().lower()
        self.Content = StreamDouble()
        if kind == "application/x-www-form-urlencoded":
            for name, value in parse_qsl(body.decode("latin-1"), keep_blank_values=True):
                self._data[name].append(_value(value))
        elif kind == "multipart/form-data":
            self._parse_multipart(content_type, body)
        else:
            self.Content = StreamDouble(body.decode("latin-1"))

    def _parse_multipart(self, content_type: str, body: bytes) -> None:
        head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            data = part.get_payload(decode=True) or b""
            filename = part.get_filename()
            if filename is not None:
                self._mime[name].append(StreamDouble(data.decode("latin-1"), file_name=filename))
            else:
                self._data[name].append(_value(data.decode("utf-8", errors="replace")))

    def Get(self, name: str, default: Any = "", index: int = 1) -> Any:
        values = self._data.get(name, [])
        return values[index - 1] if 0 < index <= len(values) else default

    def Next(self, name: str) -> str:
        return _next(self._data, name)

    def GetMimeData(self, name: str, default: Any = "", index: int = 1) -> Any:
        values = self._mime.get(name, [])
        return values[index - 1] if 0 < index <= len(values) else default

    def NextMimeData(self, name: str) -> str:
        return _next(self._mime, name)

    def GetCgiEnv(self, name: str, default: str = "") -> str:
        return self._cgi.get(name, default)


def _value(text: str) -> Any:
    return StreamDouble(text) if len(text) > IRIS_STRING_LIMIT else text


def _next(collection: dict[str, list[Any]], name: str) -> str:
    names = sorted(key for key, values in collection.items() if values)
    later = [key for key in names if key > name]
    return later[0] if later else ""
