<?php
/**
 * Fooking\Router - the PSR-4 name of FookingRouter (../FookingRouter.php), for
 * Composer's autoloader; existing code keeps using the global name.
 */
namespace Fooking;

require_once __DIR__ . '/../FookingRouter.php';

class_alias(\FookingRouter::class, Router::class);
