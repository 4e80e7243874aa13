#!/usr/bin/env bash
echo 'molecule: no scenarios yet'
