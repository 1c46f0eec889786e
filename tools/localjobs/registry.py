"""Things and thing groups: the registry calls, and what a thing joining or leaving does to the jobs that target it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from .checks import check_group_name, check_text, check_thing_name
from .resources import (
    GROUP_ARN_PREFIX,
    JOB_IN_PROGRESS,
    PENDING,
    REMOVED,
    RESOURCE_ALREADY_EXISTS,
    THING_ARN_PREFIX,
    ApiError,
    Job,
    Thing,
    ThingGroup,
)
from .scheduler import Scheduler


class Registry(Scheduler):
    """The thing registry's calls."""

    def create_thing(self, name: str, attributes: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Idempotent, as in AWS: the same name again returns the thing, unless the attributes differ."""
        check_thing_name(name)
        if attributes is not None and (
            not isinstance(attributes, Mapping)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items())
        ):
            raise ApiError("InvalidRequest", "attributes must be an object of string values")
        thing = self.things.get(name)
        if thing is None:
            thing = Thing(name, str(uuid.uuid4()), self.clock.now(), dict(attributes or {}))
            self.things[name] = thing
            self.changed[("thing", name)] = thing
        elif attributes is not None and dict(attributes) != thing.attributes:
            raise ApiError(RESOURCE_ALREADY_EXISTS, f"thing {name} exists with other attributes")
        return {"thingName": thing.name, "thingArn": thing.arn, "thingId": thing.thing_id}

    def describe_thing(self, name: str) -> dict[str, Any]:
        thing = self._thing(name)
        return {
            "defaultClientId": thing.name,
            "thingName": thing.name,
            "thingId": thing.thing_id,
            "thingArn": thing.arn,
            "attributes": dict(thing.attributes),
            "version": thing.version,
        }

    def list_things(self) -> list[dict[str, Any]]:
        return [
            {"thingName": t.name, "thingArn": t.arn, "attributes": dict(t.attributes), "version": t.version}
            for t in self.things.values()
        ]

    def delete_thing(self, name: str) -> None:
        """Pending executions of the thing become REMOVED; its place in any rollout is dropped."""
        self._thing(name)
        before = self._watch([name])
        for run in list(self._by_thing.get(name, [])):
            if run.status in PENDING:
                self._apply(run, REMOVED, None, "removed")
        for job in self.jobs.values():
            if name in job.backlog:
                job.backlog.remove(name)
                self.changed[("job", job.job_id)] = job
                self._settle_job(job)
        for group in self.groups.values():
            if name in group.members:
                group.members.remove(name)
                self.changed[("group", group.name)] = group
        del self.things[name]
        self.changed[("thing", name)] = None
        self._announce(before)

    def create_thing_group(self, name: str, description: str | None = None) -> dict[str, Any]:
        check_group_name(name)
        check_text("thingGroupDescription", description)
        group = self.groups.get(name)
        if group is None:
            group = ThingGroup(name, str(uuid.uuid4()), self.clock.now(), description)
            self.groups[name] = group
            self.changed[("group", name)] = group
        elif group.description != description:
            raise ApiError(RESOURCE_ALREADY_EXISTS, f"thing group {name} exists with other properties")
        return {"thingGroupName": group.name, "thingGroupArn": group.arn, "thingGroupId": group.group_id}

    def describe_thing_group(self, name: str) -> dict[str, Any]:
        group = self._group(name)
        view: dict[str, Any] = {
            "thingGroupName": group.name,
            "thingGroupId": group.group_id,
            "thingGroupArn": group.arn,
            "version": group.version,
            "thingGroupProperties": {},
            "thingGroupMetadata": {"creationDate": int(group.created_at)},
        }
        if group.description is not None:
            view["thingGroupProperties"]["thingGroupDescription"] = group.description
        return view

    def list_things_in_thing_group(self, name: str) -> list[str]:
        return list(self._group(name).members)

    def delete_thing_group(self, name: str) -> None:
        # AWS answers success for a group that does not exist; executions it caused are left alone.
        if self.groups.pop(name, None) is not None:
            self.changed[("group", name)] = None

    def add_thing_to_thing_group(self, group_name: str, thing: str) -> None:
        """A CONTINUOUS job that targets the group queues an execution for the thing (if none is pending)."""
        group = self._group(group_name)
        self._thing(thing)
        if thing in group.members:
            return
        group.members.append(thing)
        group.version += 1
        self.changed[("group", group_name)] = group
        jobs = [
            j
            for j in self.jobs.values()
            if j.target_selection == "CONTINUOUS" and j.status == JOB_IN_PROGRESS and group.arn in j.targets
        ]
        before = self._watch([thing])
        for job in jobs:
            if not self._has_pending(job, thing):
                self._queue(job, [thing])
        self._announce(before)

    def remove_thing_from_thing_group(self, group_name: str, thing: str) -> None:
        """A CONTINUOUS job that reached the thing only through the group marks its execution REMOVED."""
        group = self._group(group_name)
        self._thing(thing)
        if thing not in group.members:
            return
        group.members.remove(thing)
        group.version += 1
        self.changed[("group", group_name)] = group
        before = self._watch([thing])
        for job in list(self.jobs.values()):
            if job.target_selection != "CONTINUOUS" or group.arn not in job.targets:
                continue
            if thing in self._job_things(job):
                continue
            if thing in job.backlog:
                job.backlog.remove(thing)
                self.changed[("job", job.job_id)] = job
            run = self.execution(thing, job.job_id)
            if run is not None and run.status in PENDING:
                self._apply(run, REMOVED, None, "removed")
        self._announce(before)

    def _job_things(self, job: Job) -> list[str]:
        """The things the job's targets name now (groups expanded), in target order."""
        names: dict[str, None] = {}
        for arn in job.targets:
            if arn.startswith(THING_ARN_PREFIX):
                name = arn[len(THING_ARN_PREFIX) :]
                if name in self.things:
                    names[name] = None
            elif arn.startswith(GROUP_ARN_PREFIX):
                group = self.groups.get(arn[len(GROUP_ARN_PREFIX) :])
                names.update(dict.fromkeys(group.members if group else []))
        return list(names)
