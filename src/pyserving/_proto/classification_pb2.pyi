from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ClassificationRequest(_message.Message):
    __slots__ = ("input", "model_name", "model_version", "top_k", "features", "version_label")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INPUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABEL_FIELD_NUMBER: _ClassVar[int]
    input: bytes
    model_name: str
    model_version: int
    top_k: int
    features: _containers.ScalarMap[str, float]
    version_label: str
    def __init__(self, input: _Optional[bytes] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., top_k: _Optional[int] = ..., features: _Optional[_Mapping[str, float]] = ..., version_label: _Optional[str] = ...) -> None: ...

class ClassificationResponse(_message.Message):
    __slots__ = ("classes", "model_name", "model_version")
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    classes: _containers.RepeatedCompositeFieldContainer[ClassificationClass]
    model_name: str
    model_version: int
    def __init__(self, classes: _Optional[_Iterable[_Union[ClassificationClass, _Mapping]]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ...) -> None: ...

class ClassificationClass(_message.Message):
    __slots__ = ("name", "score", "index")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    name: str
    score: float
    index: int
    def __init__(self, name: _Optional[str] = ..., score: _Optional[float] = ..., index: _Optional[int] = ...) -> None: ...

class ModelStatusRequest(_message.Message):
    __slots__ = ("model_name",)
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    def __init__(self, model_name: _Optional[str] = ...) -> None: ...

class ModelStatusResponse(_message.Message):
    __slots__ = ("models", "default_model")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_MODEL_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelStatus]
    default_model: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelStatus, _Mapping]]] = ..., default_model: _Optional[str] = ...) -> None: ...

class ModelStatus(_message.Message):
    __slots__ = ("name", "versions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    versions: _containers.RepeatedCompositeFieldContainer[VersionStatus]
    def __init__(self, name: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[VersionStatus, _Mapping]]] = ...) -> None: ...

class VersionStatus(_message.Message):
    __slots__ = ("version", "state", "error", "engine", "precision", "kind", "features", "engine_reason", "labels")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        UNKNOWN: _ClassVar[VersionStatus.State]
        LOADING: _ClassVar[VersionStatus.State]
        AVAILABLE: _ClassVar[VersionStatus.State]
        UNLOADING: _ClassVar[VersionStatus.State]
        END: _ClassVar[VersionStatus.State]
        FAILED: _ClassVar[VersionStatus.State]
    UNKNOWN: VersionStatus.State
    LOADING: VersionStatus.State
    AVAILABLE: VersionStatus.State
    UNLOADING: VersionStatus.State
    END: VersionStatus.State
    FAILED: VersionStatus.State
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    ENGINE_REASON_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    version: int
    state: VersionStatus.State
    error: str
    engine: str
    precision: str
    kind: str
    features: _containers.RepeatedScalarFieldContainer[str]
    engine_reason: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[int] = ..., state: _Optional[_Union[VersionStatus.State, str]] = ..., error: _Optional[str] = ..., engine: _Optional[str] = ..., precision: _Optional[str] = ..., kind: _Optional[str] = ..., features: _Optional[_Iterable[str]] = ..., engine_reason: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("input", "model_name", "model_version", "features", "version_label", "class_name")
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    INPUT_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    VERSION_LABEL_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAME_FIELD_NUMBER: _ClassVar[int]
    input: bytes
    model_name: str
    model_version: int
    features: _containers.ScalarMap[str, float]
    version_label: str
    class_name: str
    def __init__(self, input: _Optional[bytes] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., features: _Optional[_Mapping[str, float]] = ..., version_label: _Optional[str] = ..., class_name: _Optional[str] = ...) -> None: ...

class ExplanationPart(_message.Message):
    __slots__ = ("weight", "name", "start_seconds", "end_seconds", "row", "column")
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    START_SECONDS_FIELD_NUMBER: _ClassVar[int]
    END_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROW_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    weight: float
    name: str
    start_seconds: float
    end_seconds: float
    row: int
    column: int
    def __init__(self, weight: _Optional[float] = ..., name: _Optional[str] = ..., start_seconds: _Optional[float] = ..., end_seconds: _Optional[float] = ..., row: _Optional[int] = ..., column: _Optional[int] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("model_name", "model_version", "explained", "kind", "parts", "grid_rows", "grid_columns", "method")
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    GRID_ROWS_FIELD_NUMBER: _ClassVar[int]
    GRID_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    model_name: str
    model_version: int
    explained: ClassificationClass
    kind: str
    parts: _containers.RepeatedCompositeFieldContainer[ExplanationPart]
    grid_rows: int
    grid_columns: int
    method: str
    def __init__(self, model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., explained: _Optional[_Union[ClassificationClass, _Mapping]] = ..., kind: _Optional[str] = ..., parts: _Optional[_Iterable[_Union[ExplanationPart, _Mapping]]] = ..., grid_rows: _Optional[int] = ..., grid_columns: _Optional[int] = ..., method: _Optional[str] = ...) -> None: ...
