"""All models, imported here so Alembic and ``db.create_all`` see every table."""

from app.models.alerts import (Alert, AlertEvent, AlertGroup, AlertGroupItem, AlertRule, AlertState, Notification,
                               NotificationAttempt, NotificationChannel, ProbeDependency, Silence, alert_rule_channels)
from app.models.ansible import (AnsibleCredential, AnsibleExecution, AnsibleExecutionEvent, AnsibleExecutionTemplate,
                                AnsibleGroup, AnsibleHost, AnsibleInventory, AnsiblePlaybook, AnsiblePlaybookVersion,
                                ansible_group_children, ansible_group_hosts, ansible_host_probes, ansible_inventory_groups,
                                ansible_inventory_hosts)
from app.models.auth import ROLES, ApiToken, AuthSession, Membership, User
from app.models.base import Base, utcnow
from app.models.maintenance import MaintenanceWindow, maintenance_window_groups, maintenance_window_probes
from app.models.network import Probe, ProbeGroup, ProbeLease, ProbeResult, ProbeRunLoss
from app.models.rollups import ProbeRollup
from app.models.status_pages import StatusPage, StatusPageIncident, status_page_groups, status_page_probes
from app.models.task_failure import TaskFailure
from app.models.tenant import Tenant

__all__ = [
    "AnsibleCredential", "AnsibleExecution", "AnsibleExecutionEvent", "AnsibleExecutionTemplate", "AnsibleGroup",
    "AnsibleHost", "AnsibleInventory", "AnsiblePlaybook", "AnsiblePlaybookVersion", "ansible_group_children",
    "ansible_group_hosts", "ansible_host_probes", "ansible_inventory_groups", "ansible_inventory_hosts",
    "Alert", "AlertEvent", "AlertGroup", "AlertGroupItem", "AlertRule", "ProbeDependency", "Silence", "AlertState", "Notification", "NotificationAttempt", "NotificationChannel",
    "alert_rule_channels", "MaintenanceWindow", "maintenance_window_groups", "maintenance_window_probes", "ROLES", "ApiToken", "AuthSession", "Base", "Membership", "Probe", "ProbeGroup", "ProbeLease", "ProbeResult",
    "ProbeRollup", "ProbeRunLoss", "StatusPage", "StatusPageIncident", "status_page_groups",
    "status_page_probes", "TaskFailure", "Tenant", "User", "utcnow",
]
