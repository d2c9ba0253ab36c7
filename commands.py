"""The sign-in commands: ``login``, ``logout`` and ``whoami``."""

from __future__ import annotations

import argparse
import json
import time

from auth import Authenticator
from config import Settings
from errors import EX_OK


def login(args: argparse.Namespace, settings: Settings) -> int:
    """Always runs the device-code flow: a person asked for it, so a terminal is not required."""
    settings.require_client_id()
    Authenticator(settings, interactive=True).login()
    return EX_OK


def logout(args: argparse.Namespace, settings: Settings) -> int:
    auth = Authenticator(settings, interactive=False)
    if auth.logout():
        print(f"Signed out {auth.username}; the other accounts in {settings.token_cache} were kept.")
    else:
        print(f"{auth.username} was not signed in.")
    return EX_OK


def whoami(args: argparse.Namespace, settings: Settings) -> int:
    status = Authenticator(settings, interactive=False).status()
    expires = status["access_token_expires"]
    if args.json:
        status["access_token_expires"] = (
            time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(expires)) if expires else None
        )
        print(json.dumps(status))
        return EX_OK
    print(f"signed in as {status['username']}")
    print(f"authority    {status['authority']}")
    if expires is None:
        print("access token none cached (the next command refreshes it)")
    elif expires <= time.time():
        print(
            f"access token expired at {time.strftime('%Y-%m-%d %H:%M', time.localtime(expires))} "
            "(the next command refreshes it)"
        )
    else:
        print(f"access token valid until {time.strftime('%Y-%m-%d %H:%M', time.localtime(expires))}")
    print(f"refresh token {'present' if status['refresh_token'] else 'missing: run login'}")
    print(f"token cache  {status['token_cache']}")
    return EX_OK
