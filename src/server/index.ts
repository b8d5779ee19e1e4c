/** `styleclip serve`: the local web app and its JSON API. */

export { isLoopback, type RunningServer, startServer, WEB_DIST } from './http.js';
export { loadModels, Studio } from './studio.js';
