"""The model registry: versions registered from logged models and verified file by file,
aliases, lineage both ways, and garbage collection of orphaned artifacts.

Services take their backends as arguments::

    version = register_version(store, artifacts, project="default", model_name="churn",
                               run_id=run.id, actor="ada")
    resolve(store, "default", "churn@champion")

The records' own services (models, versions, tags) are in ``service``.
"""

from loopml.registry.gc import collect_garbage as collect_garbage
from loopml.registry.lineage import InputExpander as InputExpander
from loopml.registry.lineage import input_lineage as input_lineage
from loopml.registry.lineage import version_lineage as version_lineage
from loopml.registry.mlflow_models import package_of_mlflow_model as package_of_mlflow_model
from loopml.registry.service import create_model as create_model
from loopml.registry.service import delete_model_tag as delete_model_tag
from loopml.registry.service import delete_version_tag as delete_version_tag
from loopml.registry.service import get_model as get_model
from loopml.registry.service import get_version as get_version
from loopml.registry.service import list_models as list_models
from loopml.registry.service import list_versions as list_versions
from loopml.registry.service import rename_model as rename_model
from loopml.registry.service import resolve_in_project as resolve_in_project
from loopml.registry.service import search_models as search_models
from loopml.registry.service import search_versions as search_versions
from loopml.registry.service import set_model_tag as set_model_tag
from loopml.registry.service import set_version_tag as set_version_tag
from loopml.registry.service import update_model as update_model
from loopml.registry.service import update_version as update_version
from loopml.registry.stages import latest_versions as latest_versions
from loopml.registry.stages import latest_versions_of as latest_versions_of
from loopml.registry.stages import transition_stage as transition_stage
from loopml.registry.versions import delete_model as delete_model
from loopml.registry.versions import delete_version as delete_version
from loopml.registry.versions import fail_stale_registrations as fail_stale_registrations
from loopml.registry.versions import register_version as register_version
from loopml.registry.versions import remove_alias as remove_alias
from loopml.registry.versions import resolve as resolve
from loopml.registry.versions import set_alias as set_alias
from loopml.registry.versions import settle_stale_registrations as settle_stale_registrations
