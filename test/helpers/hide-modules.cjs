// Preloaded (node --require) by tests that need a machine without some npm packages: every require or resolve of a
// name in CALMKIT_TEST_HIDE_MODULES (comma-separated) fails as it would if the package were not installed. Its
// sub-paths and the extension-added forms tsx retries with ('vega/index', 'vega.js') are hidden too.
'use strict';
const Module = require('node:module');
const hidden = new Set((process.env.CALMKIT_TEST_HIDE_MODULES || '').split(',').filter(Boolean));
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  if ([...hidden].some((name) => request === name || request.startsWith(`${name}/`) || request.startsWith(`${name}.`))) {
    const err = new Error(`Cannot find module '${request}'`);
    err.code = 'MODULE_NOT_FOUND';
    throw err;
  }
  return resolve.call(this, request, ...rest);
};
