"""``kubelab image``: the built-in container images (built offline) and putting images into a lab's
registry."""

from __future__ import annotations

import argparse
from pathlib import Path

from provisioner.artefacts import containerimages, registry
from provisioner.cli.lab import existing, say


def run(args: argparse.Namespace) -> int:
    if args.image_command == "list":
        known = containerimages.recipes()
        say(f"{'IMAGE':<10} {'ARCHIVE'}")
        for name in sorted(known):
            cached = sorted(containerimages.CACHE.glob(f"{name}-*.tar"))
            say(f"{name:<10} {cached[-1] if cached else '(not built yet: kubelab image build ' + name + ')'}")
        return 0
    if args.image_command == "push":
        driver = existing(args.name)
        source = Path(args.source)
        if not source.exists() and args.source in containerimages.recipes() and not args.rename:
            built = containerimages.build_all([args.source], say=say)[0]
            copied = registry.publish(built, registry=driver.registry, say=lambda _msg: None, force=args.force)
            names = [f"{i.repository}:{i.tag}" for i in registry.images_in(built.archive)]
            names += [":".join(registry.repository_of(alias)) for alias in built.aliases]
        else:
            if not source.exists() and args.source in containerimages.recipes():
                source = containerimages.build_all([args.source], say=say)[0].archive
            images = registry.images_in(source, rename=args.rename)
            copied = registry.push(images, registry=driver.registry, say=lambda _msg: None, force=args.force)
            names = [f"{image.repository}:{image.tag}" for image in images]
        for name in names:
            state = "pushed" if name in copied else "already there"
            say(f"{name}: {state} ({driver.registry})")
        return 0
    for built in containerimages.build_all(args.names, say=say, force=args.force):
        origin = "cached" if built.cached else "built"
        say(f"{built.name}:{built.tag} ({origin}, {built.size / 1e6:.1f} MB, {built.digest[:19]}) {built.archive}")
    return 0
