/** `styleclip serve`: the local web app and its JSON API. */

export { isLoopback, type RunningServer, type ServerOptions, startServer, WEB_DIST } from './http.js';
export { JobQueue } from './jobs.js';
export { EngineLane } from './lane.js';
export { LIMITS } from './schema.js';
export {
  ApiError,
  type FileOptions,
  loadModels,
  previewWeights,
  Studio,
  type StudioModels,
} from './studio.js';
