// Package browser drives real headless Chromium (the Debian package that
// `make tools` installs) for tests of the pages Babelfish serves: Open
// starts the browser, loads a URL and records every console error, warning,
// uncaught exception and browser log error while the page lives; a Page
// evaluates JavaScript and takes full-page screenshots. ArtifactDir says
// where tests keep what they capture.
package browser
