<?php
/**
 * Fooking\Router - the PSR-4 name of FookingRouter (../FookingRouter.php), for
 * Composer's autoloader; existing code keeps using the global name.
 */
namespace Fooking;

require_once __DIR__ . '/../FookingRouter.php';

class_alias(\FookingRouter::class, Router::class);
// So that catch (\Fooking\RouterError $e) matches without autoloading it first.
if (!class_exists(RouterError::class, false)) {
    class_alias(\FookingRouterError::class, RouterError::class);
}
