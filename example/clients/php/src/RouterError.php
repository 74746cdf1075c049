<?php
/**
 * Fooking\RouterError - the PSR-4 name of FookingRouterError (../FookingRouter.php):
 * a query the router refused. Loading Fooking\Router defines it too.
 */
namespace Fooking;

require_once __DIR__ . '/../FookingRouter.php';

if (!class_exists(RouterError::class, false)) {
    class_alias(\FookingRouterError::class, RouterError::class);
}
