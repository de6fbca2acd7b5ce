// Fails while loading: Engine.start must refuse it with the reason.
throw new Error('this module does not load');
