<?php
/**
 * Fooking\Reply - the PSR-4 name of FookingReply (../FookingReply.php), for
 * Composer's autoloader; existing code keeps using the global name.
 */
namespace Fooking;

require_once __DIR__ . '/../FookingReply.php';

class_alias(\FookingReply::class, Reply::class);
